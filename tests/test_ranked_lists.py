"""Ranked lists as the evaluation sees them, and drawn as pictures whose frames tell right from wrong."""
import cv2
import numpy as np
import pytest

from data.evaluation import ranked_top_k
from experiments.plots import ranked_lists


def test_ranked_top_k_removes_same_identity_same_camera_and_keeps_order():
    distances = np.array([[0.1, 0.2, 0.3, 0.0, 0.5],
                          [0.5, 0.4, 0.3, 0.2, 0.1]])
    g_pids, g_cams = [1, 2, 1, 1, 3], [1, 1, 2, 1, 2]
    top = ranked_top_k(distances, 3, q_pids=[1, 3], g_pids=g_pids, q_camids=[1, 1], g_camids=g_cams)
    # query 0 (pid 1, camera 1): gallery 3 and 0 are its own identity in its own camera, so they leave the ranking
    np.testing.assert_array_equal(top[0], [1, 2, 4])
    np.testing.assert_array_equal(top[1], [4, 3, 2])  # nothing of pid 3 in camera 1
    # without labels: the plain ranking; ties by gallery index
    np.testing.assert_array_equal(ranked_top_k(distances, 2), [[3, 0], [4, 3]])
    np.testing.assert_array_equal(ranked_top_k(np.zeros((1, 3)), 3), [[0, 1, 2]])
    # vehicleid removes nothing; short rows are padded with -1
    np.testing.assert_array_equal(ranked_top_k(distances[:1], 6, [1], g_pids, [1], g_cams, protocol="vehicleid"),
                                  [[3, 0, 1, 2, 4, -1]])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ranked_top_k(distances, 0)
    with pytest.raises(ValueError, match="distmat has shape"):
        ranked_top_k(distances, 2, [1], g_pids, [1], g_cams)


def _write(path, colour):
    cv2.imwrite(str(path), np.full((40, 20, 3), colour, np.uint8))
    return str(path)


def _frame_pixel(canvas, row, column):
    """BGR of the frame's top-left corner of gallery tile `column` in `row`."""
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    y = ranked_lists.MARGIN + row * (2 * ranked_lists.TEXT_HEIGHT + tile_h) + 2 * ranked_lists.TEXT_HEIGHT
    x = ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + column * (tile_w + ranked_lists.GAP)
    return tuple(int(v) for v in canvas[y + 1, x + 1])


def test_pictures_frame_matches_green_and_misses_red(tmp_path):
    query = _write(tmp_path / "q.png", (0, 0, 255))
    gallery = [_write(tmp_path / f"g{i}.png", (255, 255, 255)) for i in range(4)]
    output = ranked_lists.draw(query, [("before", gallery, [False, True, False, True]),
                                       ("after", gallery[::-1], [True, True, False, False]),
                                       ("search", gallery[:2], None)], str(tmp_path / "out" / "q.png"))
    canvas = cv2.imread(output)
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    assert canvas.shape == (2 * ranked_lists.MARGIN + 3 * (2 * ranked_lists.TEXT_HEIGHT + tile_h),
                            2 * ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 4 * tile_w
                            + 3 * ranked_lists.GAP, 3)
    green, red, grey = ranked_lists.GREEN, ranked_lists.RED, ranked_lists.GREY
    assert [_frame_pixel(canvas, 0, c) for c in range(4)] == [red, green, red, green]
    assert [_frame_pixel(canvas, 1, c) for c in range(4)] == [green, green, red, red]
    assert [_frame_pixel(canvas, 2, c) for c in range(2)] == [grey, grey]
    assert _frame_pixel(canvas, 2, 2) == (255, 255, 255)  # a shorter row leaves blank space
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "q.png"]  # no temporary left behind


def test_pictures_reject_bad_input(tmp_path):
    query = _write(tmp_path / "q.png", (0, 0, 255))
    with pytest.raises(ValueError, match="2 gallery paths but 1 match flags"):
        ranked_lists.draw(query, [("x", [query, query], [True])], str(tmp_path / "o.png"))
    with pytest.raises(ValueError, match="no ranked list"):
        ranked_lists.draw(query, [], str(tmp_path / "o.png"))
    with pytest.raises(Exception, match="missing.png"):
        ranked_lists.draw(query, [("x", [str(tmp_path / "missing.png")], None)], str(tmp_path / "o.png"))
    assert not (tmp_path / "o.png").exists()
