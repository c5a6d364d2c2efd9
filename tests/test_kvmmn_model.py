"""KVM-MN model (kvmmn.layers, kvmmn.model, kvmmn.losses): shapes, the paper's equations against an independent
NumPy implementation, fast scoring against the per-pair forward, losses, gradients, saving and export."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.distribute import make_strategy
from kvmmn import layers as kl
from kvmmn.losses import PairwiseMatchingLoss, SetwiseMatchingLoss, make_loss
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.training import TrainConfig, build_model, make_loss_fn, make_optimizer

IMAGE_SIZE = (64, 32)  # a 4x2 feature map: L = 8
TINY = dict(backbone="tiny", image_size=IMAGE_SIZE, feature_dim=16, num_heads=2, key_dim=4, value_dim=6,
            output_dim=12, comparison_dim=10, score_hidden_units=8, seed=3)


def _randomize_batch_norms(model, seed):
    """Random batch-norm parameters and moving statistics, so that inference-mode phi is a non-trivial affine map."""
    rng = np.random.default_rng(seed)
    draw = {"gamma": lambda n: rng.uniform(0.5, 1.5, n), "beta": lambda n: rng.normal(0.2, 0.3, n),
            "moving_mean": lambda n: rng.normal(0.0, 0.2, n), "moving_variance": lambda n: rng.uniform(0.5, 2.0, n)}
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind in draw:
            variable.assign(draw[kind](variable.shape).astype("float32"))


def _images(rng, *shape):
    return rng.uniform(-1.0, 1.0, size=(*shape, *IMAGE_SIZE, 3)).astype("float32")


def _pairs_of(memory, index):
    return {name: tf.gather(value, index) for name, value in memory.items()}


@pytest.fixture(scope="module")
def model():
    m = KVMMN(KVMMNConfig(**TINY))
    _randomize_batch_norms(m, seed=0)
    return m


# --- Eq. 1-6 in NumPy, written from the paper independently of the layers ------------------------------------

def np_position_embedding(rows, cols, d):
    p = np.zeros((rows, cols, d))
    for y in range(rows):
        for x in range(cols):
            for i in range(d // 4):
                wavelength = 10000.0 ** (4.0 * i / d)
                p[y, x, 2 * i] = math.sin(x / wavelength)
                p[y, x, 2 * i + 1] = math.cos(x / wavelength)
                p[y, x, 2 * i + d // 2] = math.sin(y / wavelength)
                p[y, x, 2 * i + 1 + d // 2] = math.cos(y / wavelength)
    return p


def np_phi(x, batch_norm):
    gamma, beta, mean, variance = (np.asarray(v, dtype=np.float64) for v in (
        batch_norm.gamma, batch_norm.beta, batch_norm.moving_mean, batch_norm.moving_variance))
    return np.maximum(gamma * (x - mean) / np.sqrt(variance + batch_norm.epsilon) + beta, 0.0)


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def np_memory(m, feature_map):
    """Eq. 1-2 for one projected feature map [rows, cols, d] -> K, V as [L, H, d_k], [L, H, d_v]."""
    c = m.config
    if c.position_embedding:
        feature_map = feature_map + np_position_embedding(*feature_map.shape)
    f = feature_map.reshape(-1, c.feature_dim)
    keys = np_phi(f @ np.asarray(m.memory.key_projection.kernel), m.memory.key_phi.batch_norm)
    if c.shared_key_value:
        values = keys
    else:
        values = np_phi(f @ np.asarray(m.memory.value_projection.kernel), m.memory.value_phi.batch_norm)
    return keys.reshape(len(f), c.num_heads, -1), values.reshape(len(f), c.num_heads, -1)


def np_score(m, memory_a, memory_b):
    """Eq. 3-6 for one pair, reference location by reference location and head by head."""
    (keys_a, values_a), (keys_b, values_b) = memory_a, memory_b
    num_locations, num_heads, key_dim = keys_a.shape
    w_o, w_c = np.asarray(m.fusion.projection.kernel), np.asarray(m.comparison.kernel)
    comparisons = []
    for l in range(num_locations):
        reads_a, reads_b = [], []
        for h in range(num_heads):
            reference = keys_a[l, h]
            reads_a.append(np_softmax(keys_a[:, h] @ reference / math.sqrt(key_dim)) @ values_a[:, h])
            reads_b.append(np_softmax(keys_b[:, h] @ reference / math.sqrt(key_dim)) @ values_b[:, h])
        o_a = np_phi(np.concatenate(reads_a) @ w_o, m.fusion.phi.batch_norm)
        o_b = np_phi(np.concatenate(reads_b) @ w_o, m.fusion.phi.batch_norm)
        comparisons.append(np_phi(np.concatenate([o_a, o_b]) @ w_c, m.comparison.phi.batch_norm))
    hidden, output = m.matching_score.hidden, m.matching_score.output_layer
    z = np.maximum(np.concatenate(comparisons) @ np.asarray(hidden.kernel) + np.asarray(hidden.bias), 0.0)
    return float((z @ np.asarray(output.kernel) + np.asarray(output.bias))[0])


# --- tests ---------------------------------------------------------------------------------------------------

def test_position_embedding_matches_hand_computed_values():
    out = kl.PositionEmbedding2D()(np.zeros((1, 3, 2, 8), "float32")).numpy()
    # Row y = 2, column x = 1, d = 8: frequencies 1 / 10000^(4i/8) = 1 and 1/100.
    expected = [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01),
                math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]
    np.testing.assert_allclose(out[0, 2, 1], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[0], np_position_embedding(3, 2, 8), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        kl.PositionEmbedding2D()(np.zeros((1, 3, 2, 6), "float32"))


def test_shapes_of_call_embed_score_and_attention_maps(model):
    rng = np.random.default_rng(1)
    c, num_locations = model.config, model.config.num_locations
    assert model.config.feature_shape == (4, 2) and num_locations == 8
    scores = model((_images(rng, 2), _images(rng, 2, 3)), training=True)
    assert tuple(scores.shape) == (2, 3)
    memory = model.embed(_images(rng, 5))
    assert {k: tuple(v.shape) for k, v in memory.items()} == {
        "keys": (5, 8, c.num_heads, c.key_dim), "values": (5, 8, c.num_heads, c.value_dim),
        "reference_comparison": (5, 8, 10), "pooled": (5, 32)}
    assert {k: tuple(s.shape) for k, s in model.memory_signature().items()} == {
        k: (None,) + tuple(v.shape[1:]) for k, v in memory.items()}
    np.testing.assert_allclose(model.pooled_features(_images(np.random.default_rng(2), 5)),
                               model.embed(_images(np.random.default_rng(2), 5))["pooled"], rtol=1e-6)
    assert tuple(model.score(_pairs_of(memory, [0, 1]), memory).shape) == (2, 5)
    map_a, map_b = model.attention_maps(memory, memory, location=(3, 1), head=1)
    assert map_a.shape == map_b.shape == (5, 4, 2)
    all_heads, _ = model.attention_maps(memory, memory, location=7)
    np.testing.assert_allclose(all_heads[:, 1], map_a)
    np.testing.assert_allclose(all_heads.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="outside the 4x2 feature map"):
        model.attention_maps(memory, memory, location=8)
    with pytest.raises(ValueError, match="64x32x3 images"):
        model.embed(np.zeros((1, 32, 32, 3), "float32"))


def test_permuting_the_gallery_set_permutes_the_scores(model):
    rng = np.random.default_rng(2)
    probe, gallery = _images(rng, 2), _images(rng, 2, 5)
    permutation = np.array([3, 0, 4, 2, 1])
    for training in (False, True):
        scores = model((probe, gallery), training=training).numpy()
        permuted = model((probe, gallery[:, permutation]), training=training).numpy()
        np.testing.assert_allclose(permuted, scores[:, permutation], rtol=1e-5, atol=1e-6)
    assert np.ptp(scores) > 1e-4  # the images are told apart at all


def test_layers_agree_with_numpy_equations_1_to_6():
    rng = np.random.default_rng(3)
    for overrides in ({}, {"shared_key_value": True, "value_dim": 4, "position_embedding": False}):
        m = KVMMN(KVMMNConfig(**{**TINY, **overrides}))
        _randomize_batch_norms(m, seed=4)
        images = _images(rng, 3)
        feature_maps = m.projection(m.backbone(images)).numpy().astype(np.float64)
        memories = [np_memory(m, f) for f in feature_maps]
        memory = m.embed(images)
        np.testing.assert_allclose(memory["keys"], np.stack([k for k, _ in memories]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(memory["values"], np.stack([v for _, v in memories]), rtol=1e-5, atol=1e-5)
        expected = np.array([[np_score(m, memories[a], memories[b]) for b in range(3)] for a in range(3)])
        np.testing.assert_allclose(m.score(memory, memory), expected, rtol=1e-4, atol=1e-4)
        a, b = np.array([0, 2, 1]), np.array([1, 0, 1])
        np.testing.assert_allclose(m.score_pairs(_pairs_of(memory, a), _pairs_of(memory, b)), expected[a, b],
                                   rtol=1e-4, atol=1e-4)
        assert np.ptp(expected) > 1e-3
    # The K = V variant (Table 3 row A) has no value projection: its values are its keys.
    assert not hasattr(m.memory, "value_projection")
    np.testing.assert_array_equal(memory["keys"], memory["values"])


def test_cached_batched_scoring_equals_naive_per_pair_forward(model):
    rng = np.random.default_rng(5)
    queries, gallery = model.embed(_images(rng, 3)), model.embed(_images(rng, 5))
    naive = np.array([[model.score_pairs(_pairs_of(queries, [q]), _pairs_of(gallery, [g]))[0]
                       for g in range(5)] for q in range(3)])
    np.testing.assert_allclose(model.score(queries, gallery), naive, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.score(queries, gallery, gallery_batch_size=2), naive, rtol=1e-5, atol=1e-5)
    compiled = tf.function(lambda q, g: model.score(q, g, gallery_batch_size=3),
                           input_signature=[model.memory_signature(), model.memory_signature()])
    np.testing.assert_allclose(compiled(queries, gallery), naive, rtol=1e-5, atol=1e-5)
    # Inference-mode training call: every probe against its own gallery set.
    probe, sets = _images(rng, 2), _images(rng, 2, 4)
    expected = [model.score(model.embed(probe[i:i + 1]), model.embed(sets[i]))[0] for i in range(2)]
    np.testing.assert_allclose(model((probe, sets)), np.stack(expected), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="gallery_batch_size"):
        model.score(queries, gallery, gallery_batch_size=0)


def test_gradients_reach_every_trainable_weight():
    m = KVMMN(KVMMNConfig(**TINY))
    rng = np.random.default_rng(6)
    probe, gallery, positives = _images(rng, 2), _images(rng, 2, 3), np.array([1, 0])
    output_bias = m.matching_score.output_layer.bias
    for loss, bias_moves in ((SetwiseMatchingLoss(), False), (PairwiseMatchingLoss(), True)):
        with tf.GradientTape() as tape:
            value = loss(positives, m((probe, gallery), training=True))
        gradients = tape.gradient(value, m.trainable_weights)
        for variable, gradient in zip(m.trainable_weights, gradients):
            assert gradient is not None, variable.path
            norm = float(tf.norm(gradient))
            if variable is output_bias:
                # A softmax over the M scores ignores a shift they all share.
                assert (norm > 1e-6) == bias_moves, (loss.name, norm)
            else:
                assert norm > 1e-9, variable.path
    backbone_weights = {id(v) for v in m.backbone.trainable_weights}
    assert backbone_weights and backbone_weights <= {id(v) for v in m.trainable_weights}


def test_losses_against_hand_computed_values():
    scores = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], "float32")
    # -log softmax: log(1 + e^-1 + e^-2) for the first probe (positive index 2), log 3 for the second (index 0).
    setwise = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(3)) / 2
    assert float(SetwiseMatchingLoss()(np.array([2, 0]), scores)) == pytest.approx(setwise, rel=1e-6)
    one_hot = np.array([[0, 0, 1], [1, 0, 0]], "float32")
    assert float(make_loss("setwise")(one_hot, scores)) == pytest.approx(setwise, rel=1e-6)

    def softplus(x):
        return math.log1p(math.exp(x))
    # Sigmoid cross-entropy: softplus(-s) for the positive, softplus(s) for each negative, mean over M then B.
    pair = ((softplus(1) + softplus(2) + softplus(-3)) / 3 + (softplus(-0.0) + 2 * softplus(0.0)) / 3) / 2
    assert float(PairwiseMatchingLoss()(np.array([2, 0]), scores)) == pytest.approx(pair, rel=1e-6)
    assert float(make_loss("pair")(one_hot, scores)) == pytest.approx(pair, rel=1e-6)
    independent = PairwiseMatchingLoss(reduction=None)(np.array([1.0, 0.0]), np.array([2.0, 2.0], "float32"))
    np.testing.assert_allclose(independent, [softplus(-2), softplus(2)], rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="gallery-set size"):
        SetwiseMatchingLoss()(np.array([3, 0]), scores)
    with pytest.raises(ValueError, match="choose one of setwise, pair"):
        make_loss("triplet")


def test_save_and_load_keras_file_gives_identical_scores(model, tmp_path):
    rng = np.random.default_rng(7)
    probe, gallery = _images(rng, 2), _images(rng, 2, 3)
    path = str(tmp_path / "kvmmn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded((probe, gallery)), model((probe, gallery)))
    memory, gallery_memory = loaded.embed(probe), model.embed(gallery[0])
    np.testing.assert_array_equal(loaded.score(memory, gallery_memory), model.score(model.embed(probe),
                                                                                    gallery_memory))


def test_get_config_round_trips():
    built = [kl.PositionEmbedding2D(max_wavelength=500.0), kl.BatchNormReLU(momentum=0.9, epsilon=1e-5),
             kl.KeyValueMemory(3, 5, 5, shared_key_value=True, seed=1), kl.CoAttention(),
             kl.CoAttentionFusion(7, seed=2), kl.CoAttentionComparison(9, seed=3), kl.MatchingScore(11, seed=4),
             SetwiseMatchingLoss(), PairwiseMatchingLoss()]
    for obj in built:
        config = obj.get_config()
        assert type(obj).from_config(config).get_config() == config
        assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj)).get_config() == config
    m = KVMMN(KVMMNConfig(**TINY))
    assert KVMMN.from_config(m.get_config()).get_config() == m.get_config()
    assert KVMMNConfig.from_dict(KVMMNConfig(**TINY).to_dict()) == KVMMNConfig(**TINY)


def test_config_defaults_and_errors():
    default = KVMMNConfig()
    assert (default.feature_dim, default.num_heads, default.key_dim, default.value_dim) == (512, 4, 64, 64)
    assert default.feature_shape == (14, 7) and default.num_locations == 98
    with pytest.raises(ValueError, match="unknown KVMMNConfig field"):
        KVMMNConfig.from_dict({"heads": 4})
    with pytest.raises(ValueError, match="key_dim == value_dim"):
        KVMMNConfig(shared_key_value=True, value_dim=32)
    with pytest.raises(ValueError, match="multiple of 4"):
        KVMMNConfig(feature_dim=258)
    with pytest.raises(ValueError, match="backbone"):
        KVMMNConfig(backbone="resnet")


def test_export_serving_signatures(model, tmp_path):
    rng = np.random.default_rng(8)
    images, gallery_images = _images(rng, 2), _images(rng, 3)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("embed", model.embed, input_signature=[tf.TensorSpec((None, *IMAGE_SIZE, 3), tf.float32)])
    archive.add_endpoint("score", lambda query, gallery: model.score(query, gallery, gallery_batch_size=2),
                         input_signature=[model.memory_signature(), model.memory_signature()])
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    query, gallery = served.embed(images), served.embed(gallery_images)
    np.testing.assert_allclose(served.score(query, gallery),
                               model.score(model.embed(images), model.embed(gallery_images)), rtol=1e-5, atol=1e-5)


def test_mirrored_strategy_training_step_matches_single_device():
    """One SGD step of kvmmn.training's recipe (set-wise loss, weight decay, cross-replica batch norm) on two
    replicas, each given half of the batch, leaves the same weights and batch-norm statistics as on one device."""
    # engine's strategy is one per process: two MirroredStrategy objects would abort each other's collectives.
    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    config = TrainConfig(train_dir="", model=KVMMNConfig(**TINY), mining="rand", learning_rate=0.05)
    with strategy.scope():
        mirrored, mirrored_optimizer = build_model(config, replicas=2), make_optimizer(config)
        mirrored_optimizer.build(mirrored.trainable_variables)  # slots created under the scope, as the Trainer does
    single, single_optimizer = build_model(config), make_optimizer(config)
    initial = single.get_weights()
    rng = np.random.default_rng(9)
    probe, gallery, labels = _images(rng, 4), _images(rng, 4, 3), rng.integers(0, 3, 4).astype("int32")

    def step(model, optimizer, loss_fn):
        def replica_step(probe, gallery, labels):
            with tf.GradientTape() as tape:
                outputs = loss_fn(model, ((probe, gallery), labels))
                loss = (tf.nn.compute_average_loss(outputs["per_example_loss"], global_batch_size=4)
                        + tf.nn.scale_regularization_loss(outputs["regularization_loss"]))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return replica_step

    per_replica = strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(x[2 * ctx.replica_id_in_sync_group:][:2] for x in (probe, gallery, labels)))
    replica_step = step(mirrored, mirrored_optimizer, make_loss_fn(config, mirrored))
    tf.function(lambda batch: strategy.run(replica_step, args=batch))(per_replica)
    tf.function(step(single, single_optimizer, make_loss_fn(config, single)))(probe, gallery, labels)

    after = single.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(after, initial))  # the step moved the weights
    for variable, a, b in zip(single.weights, after, mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=variable.path)


def test_real_inception_backbone_small_input():
    m = KVMMN(KVMMNConfig(backbone="inception_v1", image_size=(64, 32), feature_dim=32, key_dim=8, value_dim=8,
                          score_hidden_units=8))
    assert m.backbone.get_layer("Mixed_4f") is not None
    rng = np.random.default_rng(10)
    scores = m((_images(rng, 1), _images(rng, 1, 2)), training=True)
    assert tuple(scores.shape) == (1, 2)
    memory = m.embed(_images(rng, 2))
    assert tuple(memory["keys"].shape) == (2, 8, 4, 8) and tuple(memory["pooled"].shape) == (2, 832)
