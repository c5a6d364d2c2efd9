"""Ranked lists as the evaluation sees them, and drawn as pictures whose frames tell right from wrong."""
import os

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


def _top_list(tmp_path, name, indices, labelled=True):
    query = [_write(tmp_path / f"q{i}.png", (0, 0, 200)) for i in range(2)]
    gallery = [_write(tmp_path / f"g{i}.png", (200, 200, 200)) for i in range(5)]
    arrays = dict(indices=np.array(indices), distances=np.zeros(np.shape(indices)), query_path=np.array(query),
                  gallery_path=np.array(gallery))
    if labelled:
        arrays.update(query_pid=np.array([1, 2]), gallery_pid=np.array([1, 1, 2, 3, 2]),
                      query_camid=np.array([0, 0]), gallery_camid=np.array([0, 1, 1, 1, 0]))
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_visrank_draws_before_and_after_and_leaves_out_same_camera_shots(tmp_path):
    from experiments import visrank

    before = _top_list(tmp_path, "before.npz", [[0, 3, 1, 2], [4, 2, 3, 0]])
    after = _top_list(tmp_path, "after.npz", [[1, 0, 3, 2], [2, 4, 0, 1]])
    written = visrank.draw_top_lists([before, after], [], str(tmp_path / "out"), queries=["0", "1"], num_shown=3)
    assert [os.path.basename(p) for p in written] == ["query_00000.png", "query_00001.png"]
    first = cv2.imread(written[0])
    green, red = ranked_lists.GREEN, ranked_lists.RED
    # query 0 (pid 1, camera 0): gallery 0 is the same identity in the same camera and is left out
    assert [_frame_pixel(first, 0, c) for c in range(3)] == [red, green, red]  # 3, 1, 2
    assert [_frame_pixel(first, 1, c) for c in range(3)] == [green, red, red]  # 1, 3, 2
    second = cv2.imread(written[1])  # query 1 (pid 2, camera 0): gallery 4 is left out
    assert [_frame_pixel(second, 1, c) for c in range(3)] == [green, red, red]  # 2, 0, 1
    unlabelled = _top_list(tmp_path, "search.npz", [[0, 1], [2, 3]], labelled=False)
    (path,) = visrank.draw_top_lists([unlabelled], ["search"], str(tmp_path / "s"), num_queries=1, seed=1)
    assert _frame_pixel(cv2.imread(path), 0, 0) == ranked_lists.GREY


def test_visrank_errors_name_the_flag_or_file(tmp_path):
    from experiments import visrank

    good = _top_list(tmp_path, "good.npz", [[0, 1], [2, 3]])
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npz: not a readable top-list"):
        visrank.draw_top_lists([str(tmp_path / "bad.npz")], [], str(tmp_path))
    np.savez(tmp_path / "other.npz", indices=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="other.npz: not a top list .*missing query_path, gallery_path"):
        visrank.draw_top_lists([str(tmp_path / "other.npz")], [], str(tmp_path))
    with pytest.raises(ValueError, match="--queries \\[7\\]: the lists hold query rows 0..1"):
        visrank.draw_top_lists([good], [], str(tmp_path), queries=["7"])
    with pytest.raises(ValueError, match="--titles: 1 titles for 2 top lists"):
        visrank.draw_top_lists([good, good], ["x"], str(tmp_path))
    with pytest.raises(ValueError, match="one or two files"):
        visrank.draw_top_lists([], [], str(tmp_path))
    past = _top_list(tmp_path, "past.npz", [[0, 9], [2, 3]])
    with pytest.raises(ValueError, match="past the 5 gallery rows"):
        visrank.draw_top_lists([past], [], str(tmp_path))
