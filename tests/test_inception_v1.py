"""Inception V1 port: fidelity to TF-slim's own outputs, names, strict checkpoint loading, batch-norm modes,
weight decay and serialisation."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kvmmn.inception_v1 import (ENDPOINTS, CheckpointMismatchError, InceptionV1, SlimBatchNormalization,
                                keras_name, load_slim_checkpoint, slim_scope, slim_variable_map)

FIXTURE = "slim_inception_v1"


@pytest.fixture(scope="module")
def slim(shared_fixtures):
    root = os.path.join(shared_fixtures, FIXTURE)
    with open(os.path.join(root, "variables.txt")) as f:
        shapes = {name: json.loads(shape) for name, shape in (line.split(" ", 1) for line in f if line.strip())}
    return {"ckpt": os.path.join(root, "inception_v1_random.ckpt"), "shapes": shapes,
            "input": np.load(os.path.join(root, "input.npy")),
            "input_224": np.load(os.path.join(root, "input_224.npy")),
            "end_points": dict(np.load(os.path.join(root, "end_points.npz")))}


def save_v2_checkpoint(prefix, values):
    """Writes `values` ({slim name: array}) as a V2 checkpoint the way a TF1 slim training job's Saver does."""
    variables = {name: tf.Variable(value) for name, value in values.items()}
    return tf.compat.v1.train.Saver(var_list=variables).save(None, str(prefix), write_meta_graph=False,
                                                             write_state=False)


def read_checkpoint(path, names):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in names}


def test_mixed_4f_reproduces_slim_at_224x112(slim):
    model = InceptionV1("Mixed_4f", input_shape=(224, 112, 3))
    summary = load_slim_checkpoint(model, slim["ckpt"])
    beyond = {n for n in slim["shapes"] if n.startswith(("InceptionV1/Mixed_5", "InceptionV1/Logits"))}
    assert set(summary.skipped) == beyond | {"global_step"}
    assert summary.loaded == len(slim["shapes"]) - len(summary.skipped) == 180
    assert "Mixed_5b: 24" in str(summary) and "global_step: 1" in str(summary)
    out = model(slim["input"], training=False).numpy()
    assert out.shape == (2, 14, 7, 832)
    np.testing.assert_allclose(out, slim["end_points"]["Mixed_4f"], rtol=0, atol=1e-4)


def test_mixed_5c_and_logits_reproduce_slim_at_224x224(slim):
    model = InceptionV1("Mixed_5c", include_top=True, endpoints=["Mixed_5c", "Logits"])
    summary = load_slim_checkpoint(model, slim["ckpt"])
    assert summary.loaded == 230 and summary.skipped == ("global_step",)
    out = model(slim["input_224"], training=False)
    for name in ("Mixed_5c", "Logits"):
        np.testing.assert_allclose(out[name].numpy(), slim["end_points"][name + "_224"], rtol=0, atol=1e-4)


def test_model_variables_are_exactly_the_slim_checkpoints(slim):
    model = InceptionV1("Mixed_5c", include_top=True, input_shape=(224, 224, 3))
    names = slim_variable_map(model)
    expected = {n: s for n, s in slim["shapes"].items() if n != "global_step"}
    assert {n: list(v.shape) for n, v in names.items()} == expected
    for layer in model.layers:
        assert keras_name(slim_scope(layer.name)) == layer.name
    assert keras_name("Mixed_5b/Branch_2/Conv2d_0a_3x3") == "Mixed_5b__Branch_2__Conv2d_0a_3x3"
    assert slim_scope("Mixed_4f__Branch_1__Conv2d_0b_3x3__BatchNorm") == "Mixed_4f/Branch_1/Conv2d_0b_3x3/BatchNorm"
    with pytest.raises(ValueError, match="a__b"):
        keras_name("a__b/c")


def test_endpoint_shapes_for_a_non_square_input():
    model = InceptionV1("Mixed_5c", endpoints=ENDPOINTS, seed=0)
    out = model(np.zeros((1, 97, 45, 3), np.float32), training=False)
    # SAME padding: each stride-2 stage gives ceil(size / 2).
    expected = {"Conv2d_1a_7x7": (49, 23, 64), "MaxPool_2a_3x3": (25, 12, 64), "Conv2d_2b_1x1": (25, 12, 64),
                "Conv2d_2c_3x3": (25, 12, 192), "MaxPool_3a_3x3": (13, 6, 192), "Mixed_3b": (13, 6, 256),
                "Mixed_3c": (13, 6, 480), "MaxPool_4a_3x3": (7, 3, 480), "Mixed_4b": (7, 3, 512),
                "Mixed_4c": (7, 3, 512), "Mixed_4d": (7, 3, 512), "Mixed_4e": (7, 3, 528),
                "Mixed_4f": (7, 3, 832), "MaxPool_5a_2x2": (4, 2, 832), "Mixed_5b": (4, 2, 832),
                "Mixed_5c": (4, 2, 1024)}
    assert {name: tuple(t.shape[1:]) for name, t in out.items()} == expected


def test_global_pool_head_takes_any_input_size():
    model = InceptionV1("Mixed_5c", include_top=True, num_classes=5, global_pool=True, seed=0)
    assert model(np.zeros((2, 64, 48, 3), np.float32), training=False).shape == (2, 5)
    features = InceptionV1("Mixed_5c", include_top=True, num_classes=0, global_pool=True, seed=0)
    assert features(np.zeros((1, 64, 48, 3), np.float32)).shape == (1, 1, 1, 1024)


def _stem(**kwargs):
    return InceptionV1("Conv2d_2c_3x3", input_shape=(32, 16, 3), seed=1, **kwargs)


def test_v2_checkpoint_loads_and_reports_skipped(slim, tmp_path):
    model = _stem()
    wanted = sorted(slim_variable_map(model))
    values = read_checkpoint(slim["ckpt"], wanted)
    extras = {"global_step": np.int64(7),
              "InceptionV1/Conv2d_1a_7x7/weights/Momentum": np.zeros((7, 7, 3, 64), np.float32)}
    path = save_v2_checkpoint(tmp_path / "model.ckpt", {**values, **extras})
    assert os.path.exists(path + ".index")
    summary = load_slim_checkpoint(model, path)
    assert summary.loaded == len(wanted) == 12
    assert summary.skipped == tuple(sorted(extras))
    for name, variable in slim_variable_map(model).items():
        np.testing.assert_array_equal(variable.numpy(), values[name])


@pytest.mark.parametrize("damage", ["missing", "wrong_shape"])
def test_strict_load_names_the_bad_variable_and_changes_nothing(slim, tmp_path, damage):
    model = _stem()
    before = [w.numpy() for w in model.weights]
    values = read_checkpoint(slim["ckpt"], slim_variable_map(model))
    bad = "InceptionV1/Conv2d_2b_1x1/BatchNorm/moving_variance"
    if damage == "missing":
        del values[bad]
    else:
        values[bad] = np.ones(65, np.float32)
    path = save_v2_checkpoint(tmp_path / "model.ckpt", values)
    with pytest.raises(CheckpointMismatchError, match=bad) as error:
        load_slim_checkpoint(model, path)
    assert ("missing" if damage == "missing" else "checkpoint [65], model [64]") in str(error.value)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_unreadable_checkpoint_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_slim_checkpoint(_stem(), str(tmp_path / "nowhere.ckpt"))


def test_frozen_batchnorm_uses_and_keeps_moving_statistics():
    x = np.random.RandomState(0).uniform(-1, 1, (4, 32, 16, 3)).astype(np.float32)
    frozen = InceptionV1("Conv2d_1a_7x7", batchnorm="frozen", seed=1)
    bn = frozen.get_layer("Conv2d_1a_7x7__BatchNorm")
    bn.moving_mean.assign(np.full(64, -0.3, np.float32))
    with tf.GradientTape() as tape:
        y_train = frozen(x, training=True)
        loss = tf.reduce_sum(y_train)
    np.testing.assert_allclose(y_train.numpy(), frozen(x, training=False).numpy(), atol=1e-6)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.float32(-0.3))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)
    assert any(w is bn.beta for w in frozen.trainable_weights)
    assert np.abs(tape.gradient(loss, bn.beta).numpy()).sum() > 0

    trainable = InceptionV1("Conv2d_1a_7x7", batchnorm="trainable", seed=1)
    bn = trainable.get_layer("Conv2d_1a_7x7__BatchNorm")
    assert not np.allclose(trainable(x, training=True).numpy(), trainable(x, training=False).numpy(), atol=1e-3)
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)


def test_weight_decay_matches_slim_l2_regularizer():
    model = _stem()
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(model.losses) == len(convs) == 3  # kernels only: no batch-norm variable is decayed
    kernel = model.get_layer("Conv2d_2b_1x1").kernel
    kernel.assign(np.arange(64 * 64, dtype=np.float32).reshape(1, 1, 64, 64) / 1000.0)
    others = [l.kernel for l in convs if l.name != "Conv2d_2b_1x1"]
    slim_penalty = 4e-5 * tf.nn.l2_loss(kernel) + sum(4e-5 * tf.nn.l2_loss(k) for k in others)
    np.testing.assert_allclose(float(tf.add_n(model.losses)), float(slim_penalty), rtol=1e-5)
    assert not _stem(weight_decay=0.0).losses


def test_keras_file_round_trip(tmp_path):
    model = InceptionV1("Mixed_3b", batchnorm="frozen", seed=2, endpoints=["Conv2d_2c_3x3", "Mixed_3b"])
    x = np.random.RandomState(1).uniform(-1, 1, (1, 40, 24, 3)).astype(np.float32)
    path = str(tmp_path / "inception.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    bn = loaded.get_layer("Mixed_3b__Branch_0__Conv2d_0a_1x1__BatchNorm")
    assert isinstance(bn, SlimBatchNormalization) and bn.freeze_statistics and bn.epsilon == 0.001
    expected, got = model(x, training=True), loaded(x, training=True)
    for name in expected:
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(final_endpoint="Mixed_6a"), "Mixed_6a"),
    (dict(include_top=True), "final_endpoint must be 'Mixed_5c'"),
    (dict(batchnorm="sync"), "sync"),
    (dict(final_endpoint="Mixed_3b", endpoints=["Mixed_4f"]), r"\['Mixed_4f'\]"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InceptionV1(**kwargs)
