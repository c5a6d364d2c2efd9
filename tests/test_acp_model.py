"""ACP network (acp.layers, acp.model), its focal loss (acp.losses) and its counts (acp.params) against Table III."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from acp import layers, losses, params
from acp import model as acp_model

TINY = dict(num_layers=2, memory_size=3, num_heads=4, memory_dim=4, model_dim=16, block_dims=(6, 8, 10),
            embedding_dim=12, fusion_dropout=0.2, transformer_dropout=0.1)


def tiny(**overrides):
    return acp_model.make_config("basic", **{**TINY, **overrides})


def random_features(config, batch, k1, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(batch, k1, dim)).astype(np.float32)
            for name, dim in zip(config.feature_names, config.feature_dims)}


def run(model, features, k2=None, mask=None, training=False):
    return keras.ops.convert_to_numpy(model(acp_model.make_inputs(model, features, k2, mask), training=training))


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return acp_model.build_acp(tiny())


def test_outputs_are_the_modules_of_section_iii_b_in_order(tiny_model):
    """fusion -> rank encoding -> BaseEncoder -> memory initialisation -> refinement -> reconstruction -> classifier (Fig. 2), each
    module the model's own layer: a module skipped, repeated or moved makes another function."""
    features = random_features(tiny(), 3, 7)
    s = run(tiny_model, features, k2=3)
    assert s.shape == (3, 7) and s.dtype == np.float32
    layer = tiny_model.get_layer
    inputs = acp_model.make_inputs(tiny_model, features, 3)
    mask = inputs[acp_model.MASK_NAME]
    z = layer("multi_block_fusion")([inputs[name] for name in tiny().feature_names], mask=mask, training=False)
    z = layer("rank_encoding")(z, mask=mask)
    z = layer("base_encoder")(z, mask=mask, training=False)
    memory = layer("memory_initialization")(z, mask=mask, training=False)
    memory = layer("memory_refinement")(memory, z, inputs[acp_model.K2_NAME], mask=mask, training=False)
    z = layer("feature_reconstruction")(z, memory, training=False)
    by_hand = keras.ops.convert_to_numpy(layer("correlation_classifier")(z, mask=mask))
    np.testing.assert_allclose(s, by_hand, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s[0], s[1])


def test_variable_k1_and_per_sequence_k2_on_one_model(tiny_model):
    config = tiny()
    short, long = random_features(config, 2, 5, seed=1), random_features(config, 2, 11, seed=2)
    assert run(tiny_model, short, k2=2).shape == (2, 5)
    assert run(tiny_model, long, k2=4).shape == (2, 11)
    # k2 matters (the refinement sees a different R) and may differ between the sequences of a batch.
    assert not np.allclose(run(tiny_model, long, k2=2), run(tiny_model, long, k2=6), atol=1e-6)
    mixed = run(tiny_model, long, k2=np.array([2, 6]))
    np.testing.assert_allclose(mixed[0], run(tiny_model, long, k2=2)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mixed[1], run(tiny_model, long, k2=6)[1], rtol=1e-5, atol=1e-6)
    # k2 beyond k1 is clipped to k1.
    np.testing.assert_allclose(run(tiny_model, short, k2=50), run(tiny_model, short, k2=5), rtol=1e-5, atol=1e-6)


def pad(features, length, fill):
    return {name: np.concatenate([v, np.full(v.shape[:1] + (length - v.shape[1],) + v.shape[2:], fill, np.float32)],
                                 axis=1) for name, v in features.items()}


def test_padding_never_changes_real_positions(tiny_model):
    config = tiny()
    short, full = random_features(config, 1, 5, seed=3), random_features(config, 1, 8, seed=4)
    batch = {name: np.concatenate([v, full[name]]) for name, v in pad(short, 8, np.nan).items()}
    mask = np.ones((2, 8), bool)
    mask[0, 5:] = False
    s = run(tiny_model, batch, k2=np.array([7, 3]), mask=mask)
    assert np.all(np.isfinite(s)) and np.all(s[0, 5:] == 0)
    # Alone and unpadded; k2 = 7 reaches into the padding of sequence 0, which must not be refined on.
    np.testing.assert_allclose(s[0, :5], run(tiny_model, short, k2=7)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s[1], run(tiny_model, full, k2=3)[0], rtol=1e-5, atol=1e-6)


def test_padding_is_left_out_of_batch_norm_statistics_in_training():
    config = tiny(fusion_dropout=0.0, transformer_dropout=0.0)
    keras.utils.set_random_seed(2)
    model = acp_model.build_acp(config)
    short = random_features(config, 2, 5, seed=5)
    mask = np.zeros((2, 9), bool)
    mask[:, :5] = True
    # Batch statistics (training=True) over padded batches with garbage must equal those over the real rows.
    padded = run(model, pad(short, 9, 1e4), k2=3, mask=mask, training=True)
    np.testing.assert_allclose(padded[:, :5], run(model, short, k2=3, training=True), rtol=1e-4, atol=1e-5)


def test_keras_file_round_trip(tiny_model, tmp_path):
    features = random_features(tiny(), 2, 6, seed=6)
    path = str(tmp_path / "acp.keras")
    tiny_model.save(path)
    loaded = keras.models.load_model(path)
    assert acp_model.input_names(loaded) == acp_model.input_names(tiny_model)
    np.testing.assert_allclose(run(loaded, features, k2=3), run(tiny_model, features, k2=3), rtol=1e-6, atol=1e-7)


def test_layer_configs_round_trip():
    for layer in (layers.MultiBlockFeatureFusion(8, dropout=0.3, gamma_init=2.0, seed=4),
                  layers.TransformerEncoderLayer(2, 32, dropout=0.1, seed=1), layers.BaseEncoder(3, 2, 32, seed=2),
                  layers.MemoryInitialization(5, 4, seed=3), layers.MemoryRefinement(2, 32, seed=5),
                  layers.FeatureReconstruction(2, 0.1, seed=6), layers.CorrelationClassifier()):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config
    loss = losses.CorrelationFocalLoss(gamma=1.5)
    assert losses.CorrelationFocalLoss.from_config(loss.get_config()).gamma == 1.5


def test_saved_model_export_serves_any_k1(tiny_model, tmp_path):
    path = str(tmp_path / "export")
    tiny_model.export(path, verbose=False)
    exported = tf.saved_model.load(path)
    for k1 in (4, 9):
        inputs = acp_model.make_inputs(tiny_model, random_features(tiny(), 2, k1, seed=k1), k2=3)
        np.testing.assert_allclose(exported.serve(inputs).numpy(), tiny_model(inputs).numpy(), rtol=1e-5, atol=1e-6)


def test_inside_tf_function_with_variable_k1(tiny_model):
    config = tiny()

    @tf.function(reduce_retracing=True)
    def correlations(f3, f4, f5, k2):
        return tiny_model(acp_model.make_inputs(tiny_model, {"f3": f3, "f4": f4, "f5": f5}, k2), training=False)

    for k1 in (3, 8):
        features = random_features(config, 2, k1, seed=k1)
        got = correlations(*(tf.constant(features[n]) for n in acp_model.BLOCK_NAMES), tf.constant(2))
        np.testing.assert_allclose(got.numpy(), run(tiny_model, features, k2=2), rtol=1e-5, atol=1e-6)


def test_predict_correlations_batches_sequences(tiny_model):
    features = random_features(tiny(), 5, 6, seed=7)
    np.testing.assert_allclose(acp_model.predict_correlations(tiny_model, features, k2=2, batch_size=2),
                               run(tiny_model, features, k2=2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="k2"):
        acp_model.make_inputs(tiny_model, features)
    with pytest.raises(ValueError, match="f5"):
        acp_model.make_inputs(tiny_model, {"f3": features["f3"], "f4": features["f4"]}, k2=2)


@pytest.mark.parametrize("experiment", sorted(acp_model.TABLE_VII))
def test_table_vii_ablation_builds_and_trains_one_step(experiment):
    config = tiny(**acp_model.TABLE_VII[experiment])
    keras.utils.set_random_seed(3)
    model = acp_model.build_acp(config)
    counted = params.count_params(config)
    assert model.count_params() == counted.total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == counted.total_trainable
    for name, trainable in counted.trainable.items():
        assert model.get_layer(name).count_params() == trainable + counted.non_trainable[name], name

    features = random_features(config, 4, 6, seed=8)
    mask = np.ones((4, 6), bool)
    mask[1, 4:] = False
    labels = np.where(mask, np.random.default_rng(0).integers(0, 2, size=(4, 6)), -1).astype(np.float32)
    inputs = acp_model.make_inputs(model, features, k2=3, mask=mask)
    optimizer = keras.optimizers.Adam(1e-3)
    before = [w.numpy().copy() for w in model.trainable_weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.correlation_focal_loss(labels, model(inputs, training=True), config.focal_gamma))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(loss.numpy())
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    optimizer.apply(gradients, model.trainable_weights)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]


def test_training_with_the_focal_loss_learns():
    config = tiny(fusion_dropout=0.0, transformer_dropout=0.0)
    keras.utils.set_random_seed(4)
    model = acp_model.build_acp(config)
    features = random_features(config, 8, 6, seed=9)
    # Learnable target: a neighbour matches when its f5 has a positive first coordinate.
    labels = (features["f5"][..., 0] > 0).astype(np.float32)
    inputs = acp_model.make_inputs(model, features, k2=3)
    loss_fn = losses.CorrelationFocalLoss(config.focal_gamma)
    optimizer = keras.optimizers.Adam(1e-2)
    history = []
    for _ in range(8):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(inputs, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
        history.append(float(loss))
    assert history[-1] < 0.6 * history[0]


def test_refinement_needs_memory_and_overrides_are_checked():
    with pytest.raises(ValueError, match="use_refinement"):
        acp_model.make_config("basic", use_memory=False)
    with pytest.raises(ValueError, match="num_heads"):
        acp_model.make_config("basic", num_heads=7)
    with pytest.raises(ValueError, match="memroy_size"):
        acp_model.make_config("xl", memroy_size=4)
    with pytest.raises(ValueError, match="preset"):
        acp_model.make_config("large")
    assert acp_model.parse_overrides(["num_layers=2", "use_memory=false", "block_dims=4:5:6", "focal_gamma=0.5"]) \
        == dict(num_layers=2, use_memory=False, block_dims=(4, 5, 6), focal_gamma=0.5)
    with pytest.raises(ValueError, match="use_memory=maybe"):
        acp_model.parse_overrides(["use_memory=maybe"])


def test_presets_are_table_ii():
    basic, xl = acp_model.PRESETS["basic"], acp_model.PRESETS["xl"]
    assert (basic.num_layers, basic.memory_size, basic.num_heads, basic.memory_dim, basic.focal_gamma,
            basic.model_dim, basic.fusion_dropout) == (3, 8, 16, 32, 2.0, 256, 0.4)
    assert (xl.num_layers, xl.memory_size, xl.num_heads, xl.memory_dim, xl.focal_gamma, xl.model_dim,
            xl.fusion_dropout) == (3, 8, 16, 128, 1.0, 1024, 0.0)


@pytest.mark.parametrize("preset", ["basic", "xl"])
def test_parameter_counts_match_table_iii(preset):
    config = acp_model.PRESETS[preset]
    counted = params.count_params(config)
    model = acp_model.build_acp(preset)
    assert model.count_params() == counted.total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == counted.total_trainable
    paper = params.TABLE_III[preset]["params"]
    assert abs(counted.total_trainable - paper) / paper < 0.001
    assert abs(counted.total - paper) / paper < 0.01
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("preset,k1", [("basic", 25), ("basic", 50), ("xl", 25), ("xl", 50)])
def test_macc_counts_match_table_iii(preset, k1):
    maccs = sum(params.count_maccs(acp_model.PRESETS[preset], k1, k2=6).values())
    paper = params.TABLE_III[preset]["maccs"][k1]
    assert abs(maccs - paper) / paper < 0.1


def test_macc_count_of_one_encoder_layer_by_hand():
    config = tiny(num_layers=1, use_fusion=False, use_memory=False, use_refinement=False)
    d, k1 = config.model_dim, 5
    expected = 4 * k1 * d * d + 2 * k1 * k1 * d + 2 * k1 * d * 4 * d
    assert params.count_maccs(config, k1, k2=3)["base_encoder"] == expected
    assert set(params.count_maccs(config, k1, k2=3)) == {"embedding_projection", "base_encoder",
                                                         "correlation_classifier"}


def test_acp_params_binary_prints_table_iii_figures(capsys):
    from acp.cli import params as params_binary
    from engine import cli

    cli.parse(params_binary.FLAGS, ["acp-params", "--preset=xl", "--k1=50"])
    params_binary.main(["acp-params"])
    out = capsys.readouterr().out
    assert "62,479,881" in out and "62.48M" in out and "2.40G MACCs at k1=50" in out
    assert "memory_refinement" in out and "feature_reconstruction" in out
    cli.parse(params_binary.FLAGS, ["acp-params", "--override=num_heads=7"])
    with pytest.raises(ValueError, match="num_heads=7"):
        params_binary.main(["acp-params"])


def focal_formula(labels, s, gamma):
    p = np.where(labels == 1, s, 1 - s)
    return np.sum(np.where(labels >= 0, -((1 - p) ** gamma) * np.log(p), 0.0), axis=-1)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_loss_is_eq_12_13(gamma):
    rng = np.random.default_rng(int(gamma))
    s = rng.uniform(0.02, 0.98, size=(3, 7)).astype(np.float32)
    labels = rng.integers(0, 2, size=(3, 7)).astype(np.float32)
    labels[2, 5:] = losses.IGNORE_LABEL
    per_sequence = keras.ops.convert_to_numpy(losses.correlation_focal_loss(labels, s, gamma))
    np.testing.assert_allclose(per_sequence, focal_formula(labels, s, gamma), rtol=1e-5)
    loss = losses.CorrelationFocalLoss(gamma)(labels, s)
    np.testing.assert_allclose(float(loss), focal_formula(labels, s, gamma).mean(), rtol=1e-5)
    # Keras' BinaryFocalCrossentropy has the same element terms but averages them over the k1 neighbours.
    keras_mean = keras.losses.BinaryFocalCrossentropy(gamma=gamma, reduction=None)(labels[:2], s[:2])
    np.testing.assert_allclose(per_sequence[:2], 7 * keras.ops.convert_to_numpy(keras_mean), rtol=1e-5)
    assert math.isclose(float(losses.correlation_focal_loss(np.ones((1, 1)), np.full((1, 1), 0.5), gamma)[0]),
                        0.5 ** gamma * math.log(2), rel_tol=1e-6)
