"""The demo end to end on a tiny synthetic dataset, and the colour-histogram feature it ranks."""
import os

import cv2
import numpy as np
import pytest

from data import handcrafted
from data.record import DatasetError
from experiments import demo

TINY = dict(num_identities=16, num_distractors=4, num_junk=2, progress=False)


def test_demo_beats_random_ranking_clearly(tmp_path):
    outcome = demo.evaluate_baseline("synthetic", str(tmp_path / "synthetic"), max_rank=10, load_options=TINY)
    baseline, chance = outcome["baseline"], outcome["chance"]
    assert baseline["num_queries"] == chance["num_queries"] == len(outcome["record"].query)
    assert baseline["mAP"] > chance["mAP"] + 0.15
    assert baseline["cmc"][0] > chance["cmc"][0] + 0.15
    text = demo.report(outcome)
    assert "Dataset synthetic" in text and "Rank-5" in text and "Random ranking: mAP" in text


def test_stripe_histograms_follow_colour_per_stripe():
    image = np.zeros((60, 20, 3), np.uint8)
    image[:30] = (0, 0, 255)  # red (BGR) top half
    image[30:] = (255, 0, 0)  # blue bottom half
    feature = handcrafted.stripe_histograms(image, num_stripes=2, bins=4, image_size=None)
    assert feature.shape == (handcrafted.feature_dim(2, 4),) and feature.dtype == np.float32
    assert np.linalg.norm(feature) == pytest.approx(1.0)
    top, bottom = feature.reshape(2, 6, 4)  # stripe x (H, S, V, R, G, B) x bin
    assert top[3, 3] > 0 and top[5, 0] > 0 and top[3, 0] == 0  # R high, B low on top
    assert bottom[3, 0] > 0 and bottom[5, 3] > 0 and bottom[5, 0] == 0
    # Every (stripe, channel) histogram holds one unit of mass before the final normalisation.
    np.testing.assert_allclose((feature.reshape(2, 6, 4) ** 2).sum(axis=2), 1 / 12, rtol=1e-5)


def test_center_weighting_discounts_the_sides():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 10:30] = 255  # white person in the middle, black sides
    uniform = handcrafted.stripe_histograms(image, num_stripes=1, bins=2, center_sigma=None, image_size=None)
    centred = handcrafted.stripe_histograms(image, num_stripes=1, bins=2, center_sigma=0.15, image_size=None)
    value_white = lambda f: f.reshape(6, 2)[2, 1]  # noqa: E731  (V channel, upper bin)
    assert value_white(centred) > value_white(uniform)


def test_center_per_camera_removes_camera_offsets():
    rng = np.random.default_rng(0)
    identity = rng.normal(size=(4, 8))
    offsets = 5 * rng.normal(size=(2, 8))
    features = np.concatenate([identity + offsets[0], identity + offsets[1]])
    centered = handcrafted.center_per_camera(features, [0] * 4 + [1] * 4)
    np.testing.assert_allclose(centered[:4], centered[4:], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(centered, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="camids must hold one camera per feature row"):
        handcrafted.center_per_camera(features, [0, 1])


def test_unreadable_image_names_the_file(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    cv2.imwrite(str(good), np.full((16, 8, 3), 128, np.uint8))
    bad.write_bytes(b"not a jpeg")
    assert handcrafted.histogram_features([str(good)]).shape == (1, handcrafted.feature_dim())
    with pytest.raises(DatasetError, match="bad.jpg: cannot decode image"):
        handcrafted.histogram_features([str(good), str(bad)])


def test_demo_parts_are_validated():
    from experiments.demo import check_parts

    assert check_parts(["acp", "histogram"], "synthetic") == ("histogram", "rerank")  # "acp": the old name
    assert check_parts(["rerank", "kvmmn"], "synthetic") == ("kvmmn", "rerank")
    assert check_parts(["histogram"], "market1501") == ("histogram",)
    with pytest.raises(ValueError, match="choose one or more"):
        check_parts(["histogram", "resnet"], "synthetic")
    with pytest.raises(ValueError, match="synthetic dataset only"):
        check_parts(["kvmmn"], "market1501")
    with pytest.raises(ValueError, match="unknown"):
        check_parts(["histogram"], "market-1501")


def test_demo_writes_every_printed_number_as_json(tmp_path, capsys):
    import json

    from engine import cli
    from experiments.cli import demo as demo_binary

    root = str(tmp_path / "synthetic")
    demo.evaluate_baseline("synthetic", root, load_options=TINY)  # generate the tiny dataset once
    output = tmp_path / "out" / "numbers.json"
    cli.parse(demo_binary.FLAGS, ["reid-demo", "--parts=histogram", f"--data_root={root}", f"--output_json={output}",
                                  f"--output_dir={tmp_path / 'pictures'}"])
    demo_binary.main(["reid-demo"])
    results = json.loads(output.read_text())
    assert set(results) == {"histogram"} and set(results["histogram"]) == {"histogram", "random"}
    for numbers in results["histogram"].values():
        assert set(numbers) == {"rank1", "mAP"} and all(0.0 <= v <= 1.0 for v in numbers.values())
    printed = capsys.readouterr().out
    assert f"mAP:  {100 * results['histogram']['histogram']['mAP']:.1f}%" in printed
    assert f"Results (JSON): {output}" in printed


def test_demo_kvmmn_seeds_flag_is_checked_before_any_work(tmp_path):
    from engine import cli
    from experiments.cli import demo as demo_binary

    for bad in ("1,1", "a", "-1", ""):
        cli.parse(demo_binary.FLAGS, ["reid-demo", "--parts=histogram", f"--kvmmn_seeds={bad}",
                                      f"--data_root={tmp_path / 'never'}"])
        with pytest.raises(cli.UserError, match="--kvmmn_seeds"):
            demo_binary.main(["reid-demo"])
    assert not (tmp_path / "never").exists()
    assert demo_binary.kvmmn_seeds(["2", "0"]) == [2, 0]


def test_demo_claims_say_which_held():
    results = {"histogram": {"histogram": {"mAP": 0.30, "rank1": 0.28}},
               "kvmmn": {"kvmmn": {"mAP": 0.35, "rank1": 0.40}, "pooled_l2": {"mAP": 0.36, "rank1": 0.30}},
               "rerank": {"baseline": {"mAP": 0.30, "rank1": 0.2}, "acp": {"mAP": 0.32, "rank1": 0.2},
                          "k_reciprocal": {"mAP": 0.32, "rank1": 0.25}}}
    lines = demo.claims(results)
    assert lines == [
        "  [NO ] KVM-MN above the pooled-L2 ranking of its backbone: mAP -1.0, rank-1 +10.0 points",
        "  [yes] KVM-MN above the colour histograms: mAP +5.0, rank-1 +12.0 points",
        "  [yes] ACP above the baseline it re-ranks: mAP +2.0, rank-1 +0.0 points",
        "  [yes] ACP at least as good as k-reciprocal: mAP +0.0, rank-1 -5.0 points"]
    assert demo.claims({"histogram": results["histogram"]}) == []


def test_demo_pictures_of_rankings_before_and_after(tmp_path):
    import types

    from experiments.plots import ranked_lists

    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((32, 16, 3), 40 * i, np.uint8))
        paths.append(str(path))
    query = types.SimpleNamespace(path=np.array(paths[:2]), pid=np.array([1, 2]), camid=np.array([0, 0]))
    gallery = types.SimpleNamespace(path=np.array(paths[2:]), pid=np.array([1, 2, 1, 3]),
                                    camid=np.array([0, 1, 1, 1]))
    before = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    after = np.array([[0.4, 0.3, 0.1, 0.2], [0.2, 0.1, 0.3, 0.4]])
    queries = demo.pick_queries(2, 5, seed=0)
    assert queries == [0, 1] and demo.pick_queries(100, 3, seed=0) == demo.pick_queries(100, 3, seed=0)
    written = demo.rerank_pictures(query, gallery, "market1501", {"baseline": before, "ACP": after}, queries,
                                   str(tmp_path / "pictures"))
    assert len(written) == 2 and all(os.path.isfile(p) for p in written)
    canvas = cv2.imread(written[0])
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    # query 0 (pid 1, camera 0): gallery 0 (pid 1, camera 0) is left out; 3 images a row
    assert canvas.shape[1] == 2 * ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 3 * tile_w \
        + 2 * ranked_lists.GAP

    def frame(row, column):
        y = ranked_lists.MARGIN + row * (2 * ranked_lists.TEXT_HEIGHT + tile_h) + 2 * ranked_lists.TEXT_HEIGHT
        x = ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + column * (tile_w + ranked_lists.GAP)
        return tuple(int(v) for v in canvas[y + 1, x + 1])

    green, red = ranked_lists.GREEN, ranked_lists.RED
    assert [frame(0, c) for c in range(3)] == [red, green, red]  # baseline: gallery 1, 2, 3
    assert [frame(1, c) for c in range(3)] == [green, red, red]  # ACP: gallery 2, 3, 1


def test_demo_co_attention_picture_of_a_matched_pair(tmp_path):
    from data import datasets
    from kvmmn.model import KVMMN, KVMMNConfig

    record = datasets.load("synthetic", str(tmp_path / "synthetic"), **TINY)
    model = KVMMN(KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=8,
                              value_dim=8, score_hidden_units=8))
    path = demo.co_attention_picture(model, record, str(tmp_path / "pictures"), seed=0)
    picture = cv2.imread(path)
    assert path.endswith("kvmmn_co_attention.png") and picture.shape[0] > 100 and picture.shape[1] > 200
    assert picture.std() > 10  # images and heat maps, not a blank canvas
