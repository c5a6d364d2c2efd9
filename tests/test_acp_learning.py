"""The ACP demo's pipeline (acp.demo): what run_demo hands to experiments.demo, and the baseline's recipe details
that decide whether a short training learns."""
import dataclasses
import os

import keras
import numpy as np
import pytest

from acp import demo, training
from data import evaluation
from engine import distribute
from features import feature_file as feature_files
from features.head import ModelConfig, build_baseline
from features.recipe import Recipe

TINY_DATA = dict(num_identities=12, num_cameras=3, min_cameras=2, min_images_per_camera=2, max_images_per_camera=3,
                 num_distractors=2, num_junk=1, height=64, width=32)
TINY_DEMO = dataclasses.replace(
    demo.DemoConfig(), image_size=(32, 16),
    baseline_recipe=Recipe(num_identities=4, num_instances=2, epochs=1, learning_rate=1e-3,
                                    warmup_epochs=0, decay_epochs=()),
    acp_recipe=training.Recipe(learning_rate=1e-3, epochs=1, warmup_epochs=0.5))


def test_baseline_batch_norm_uses_pytorch_momentum():
    # Keras' default momentum 0.99 leaves the moving statistics a third of the way from their initial values after
    # the demo's 140 steps, and the evaluated features with them (measured: mAP 10% instead of 28%).
    model = build_baseline(ModelConfig(num_classes=4, image_size=(32, 16), blocks=(1, 1, 1, 1)))
    norms = [layer for layer in model.get_layer("resnet").layers + model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 10 and {layer.momentum for layer in norms} == {0.9}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("acp_demo")
    return demo.run_demo(str(root / "data"), str(root / "work"), TINY_DEMO, load_options=TINY_DATA, verbose=0,
                         print_fn=lambda *args: None)


def test_run_demo_extracts_again_a_feature_file_of_an_older_format(tiny_demo):
    """A cached feature file without the protocol (format 1, an older version's cache) is written again, with it."""
    feature_file, work_dir = tiny_demo["feature_file"], tiny_demo["work_dir"]
    with np.load(feature_file) as archive:
        old = {name: archive[name] for name in archive.files if name not in ("protocol", "dataset_split")}
    old["version"] = np.asarray(1, np.int64)
    np.savez(feature_file, **old)
    os.utime(feature_file)  # newer than the checkpoint: only the format makes it stale
    again = demo.train_and_extract(tiny_demo["record"], work_dir, TINY_DEMO, distribute.make_strategy("one_device"),
                                   verbose=0)
    assert again == feature_file and feature_files.load_features(feature_file).protocol == tiny_demo["protocol"]


def test_run_demo_returns_each_method_with_its_ranking(tiny_demo):
    results, features = tiny_demo["results"], tiny_demo["features"]
    assert tuple(results) == ("baseline", "aqe", "alpha_qe", "k_reciprocal", "acp")
    query, gallery = features.query, features.gallery
    assert [s.path for s in tiny_demo["record"].query] == list(query.path)
    for method, outcome in results.items():
        assert 0 < outcome["mAP"] <= 1 and outcome["rank1"] == outcome["cmc"][0], method
        distances = outcome["distances"]
        assert distances.shape == (len(query), len(gallery)) and distances.dtype == np.float32
        # the returned distances are the ranking that was evaluated
        again = evaluation.evaluate(distances, query.pid, gallery.pid, query.camid, gallery.camid,
                                    protocol=tiny_demo["protocol"])
        assert again["mAP"] == pytest.approx(outcome["mAP"], abs=1e-6), method
        assert tiny_demo["distances"][method] is distances
    assert not np.allclose(results["acp"]["distances"], results["baseline"]["distances"])
    assert "ACP" in tiny_demo["table"] and "k-reciprocal" in tiny_demo["table"]
