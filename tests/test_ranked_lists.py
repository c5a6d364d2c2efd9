"""Ranked lists as the evaluation sees them, ranking files (JSON, CSV, npz) written and read back, and drawn as
pictures whose frames tell right from wrong."""
import os

import cv2
import numpy as np
import pytest

from data.evaluation import ranked_top_k
from experiments.plots import ranked_lists
from rerank import rankings


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
    """A ranking file of 2 queries over 5 gallery images, written as acp-rerank --top_list writes it."""
    query = [_write(tmp_path / f"q{i}.png", (0, 0, 200)) for i in range(2)]
    gallery = [_write(tmp_path / f"g{i}.png", (200, 200, 200)) for i in range(5)]
    labels = dict(query_pid=[1, 2], query_camid=[0, 0], gallery_pid=[1, 1, 2, 3, 2],
                  gallery_camid=[0, 1, 1, 1, 0]) if labelled else {}
    distances = np.sort(np.random.default_rng(0).random(np.shape(indices)), axis=1)
    ranking = rankings.from_top(indices, distances, query, gallery, **labels)
    return rankings.write(str(tmp_path / name), ranking)


@pytest.mark.parametrize("extension", rankings.EXTENSIONS)
def test_visrank_draws_before_and_after_and_leaves_out_same_camera_shots(tmp_path, extension):
    before = _top_list(tmp_path, "before" + extension, [[0, 3, 1, 2], [4, 2, 3, 0]])
    after = _top_list(tmp_path, "after" + extension, [[1, 0, 3, 2], [2, 4, 0, 1]])
    written = ranked_lists.draw_top_lists([before, after], [], str(tmp_path / "out"), queries=["0", "1"],
                                          num_shown=3)
    assert [os.path.basename(p) for p in written] == ["query_00000.png", "query_00001.png"]
    first = cv2.imread(written[0])
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    assert first.shape == (2 * ranked_lists.MARGIN + 2 * (2 * ranked_lists.TEXT_HEIGHT + tile_h),
                           2 * ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 3 * tile_w
                           + 2 * ranked_lists.GAP, 3)  # two rows side by side: before above after
    green, red = ranked_lists.GREEN, ranked_lists.RED
    # query 0 (pid 1, camera 0): gallery 0 is the same identity in the same camera and is left out
    assert [_frame_pixel(first, 0, c) for c in range(3)] == [red, green, red]  # 3, 1, 2
    assert [_frame_pixel(first, 1, c) for c in range(3)] == [green, red, red]  # 1, 3, 2
    second = cv2.imread(written[1])  # query 1 (pid 2, camera 0): gallery 4 is left out
    assert [_frame_pixel(second, 1, c) for c in range(3)] == [green, red, red]  # 2, 0, 1


@pytest.mark.parametrize("extension", rankings.EXTENSIONS)
def test_visrank_without_labels_frames_grey_and_leaves_nothing_out(tmp_path, extension):
    unlabelled = _top_list(tmp_path, "search" + extension, [[0, 1, 4], [2, 3, 1]], labelled=False)
    (path,) = ranked_lists.draw_top_lists([unlabelled], ["search"], str(tmp_path / "s"), queries=["0"])
    canvas = cv2.imread(path)
    assert [_frame_pixel(canvas, 0, c) for c in range(3)] == [ranked_lists.GREY] * 3  # gallery 0 kept: no labels
    # a labelled ranking beside an unlabelled one cannot tell matches either: grey throughout
    labelled = _top_list(tmp_path, "labelled" + extension, [[0, 1, 4], [2, 3, 1]])
    (path,) = ranked_lists.draw_top_lists([labelled, unlabelled], [], str(tmp_path / "m"), queries=["1"])
    assert _frame_pixel(cv2.imread(path), 0, 0) == ranked_lists.GREY


def test_visrank_errors_name_the_flag_or_file(tmp_path):
    good = _top_list(tmp_path, "good.json", [[0, 1], [2, 3]])
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npz: not a readable .npz ranking file"):
        ranked_lists.draw_top_lists([str(tmp_path / "bad.npz")], [], str(tmp_path))
    np.savez(tmp_path / "other.npz", indices=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="other.npz: not a ranking file .*missing query, query_path"):
        ranked_lists.draw_top_lists([str(tmp_path / "other.npz")], [], str(tmp_path))
    with pytest.raises(ValueError, match="--queries \\[7\\]: not among the 2 queries of .*good.json"):
        ranked_lists.draw_top_lists([good], [], str(tmp_path), queries=["7"])
    with pytest.raises(ValueError, match="--titles: 1 titles for 2 ranking files"):
        ranked_lists.draw_top_lists([good, good], ["x"], str(tmp_path))
    with pytest.raises(ValueError, match="one or two files"):
        ranked_lists.draw_top_lists([], [], str(tmp_path))
    with pytest.raises(ValueError, match="x.txt: a ranking file ends in .json, .csv, .npz"):
        ranked_lists.draw_top_lists([str(tmp_path / "x.txt")], [], str(tmp_path))
    with pytest.raises(ValueError, match="indices point past the 5 gallery rows"):
        _top_list(tmp_path, "past.json", [[0, 9], [2, 3]])
    other = rankings.write(str(tmp_path / "other.csv"), rankings.from_top([[0]], [[0.5]], ["/elsewhere.png"], ["/g"]))
    with pytest.raises(ValueError, match="other.csv ranks other queries than .*good.json"):
        ranked_lists.draw_top_lists([good, other], ["a", "b"], str(tmp_path))
