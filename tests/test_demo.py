"""The demo end to end on a tiny synthetic dataset, and the colour-histogram feature it ranks."""
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
    with pytest.raises(DatasetError, match="bad.jpg: cannot read"):
        handcrafted.histogram_features([str(good), str(bad)])


def test_demo_parts_are_validated():
    from absl import app

    from experiments.demo import check_parts

    assert check_parts(["acp", "histogram"], "synthetic") == ("histogram", "acp")
    assert check_parts(["histogram"], "market1501") == ("histogram",)
    with pytest.raises(app.UsageError, match="choose one or more"):
        check_parts(["histogram", "resnet"], "synthetic")
    with pytest.raises(app.UsageError, match="synthetic dataset only"):
        check_parts(["kvmmn"], "market1501")
    with pytest.raises(app.UsageError, match="unknown"):
        check_parts(["histogram"], "market-1501")
