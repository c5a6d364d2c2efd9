"""KVM-MN's training recipe itself ("Training the Network" and Table 1), as `kvmmn-train` runs it by default:
SGD with momentum 0.9, learning rate 0.01 / 10 after 60% and 80% of the steps, TF-slim weight decay 2e-4 as a loss
term, random erasing and rotation on (Table 1's KVM-MN; off is its "KVM-MN-noAug"), and one batch norm whose
training statistics cover o^A and o^B together."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from data.pipeline import decode, resize
from kvmmn import training
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.training import TrainConfig, make_loss_fn, make_optimizer

TINY = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                   score_hidden_units=8, seed=1)
SYNTHETIC = dict(num_identities=16, num_cameras=3, min_cameras=2, max_images_per_camera=3, num_distractors=4,
                 num_junk=1, height=64, width=32)


def batch(rng, size=2, set_size=3):
    probe = rng.uniform(-1, 1, (size, *TINY.image_size, 3)).astype("float32")
    gallery = rng.uniform(-1, 1, (size, set_size, *TINY.image_size, 3)).astype("float32")
    return (probe, gallery), rng.integers(0, set_size, size).astype("int32")


# ------------------------------------------------------------------------------------------------ the optimizer
def test_sgd_with_momentum_0_9_and_no_decoupled_decay(tmp_path):
    optimizer = make_optimizer(TrainConfig(train_dir=str(tmp_path)))
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == pytest.approx(0.9)
    assert not optimizer.weight_decay  # the decay is slim's loss term (below), not Keras's decoupled one
    # the update itself: a constant gradient g moves w by -lr g, then by -(0.9 lr + lr) g (momentum carries)
    weight = tf.Variable([1.0, -2.0])
    gradient = tf.constant([0.5, 1.0])
    moves = []
    for _ in range(2):
        before = weight.numpy().copy()
        optimizer.apply_gradients([(gradient, weight)])
        moves.append(weight.numpy() - before)
    np.testing.assert_allclose(moves[0], -0.01 * gradient.numpy(), rtol=1e-5)
    np.testing.assert_allclose(moves[1], -(0.9 * 0.01 + 0.01) * gradient.numpy(), rtol=1e-5)


def test_learning_rate_is_divided_by_10_after_60_and_80_percent_of_the_steps(tmp_path):
    config = TrainConfig(train_dir=str(tmp_path))
    assert config.max_steps == 250_000
    optimizer = make_optimizer(config)
    optimizer.build([tf.Variable(0.0)])

    def rate(step):  # the rate of the step that runs with `step` updates already applied
        optimizer.iterations.assign(step)
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    # Keras's PiecewiseConstantDecay keeps a value up to its boundary included: step 150,000 (the 150,001st) is
    # the last at 0.01; one step in 250K.
    expected = {0: 0.01, 149_999: 0.01, 150_000: 0.01, 150_001: 0.001, 199_999: 0.001, 200_000: 0.001,
                200_001: 0.0001, 249_999: 0.0001}
    assert {step: pytest.approx(rate(step), rel=1e-6) for step in expected} == expected


def test_weight_decay_is_slims_loss_term_on_weight_matrices(tmp_path):
    config = TrainConfig(train_dir=str(tmp_path), model=TINY)
    assert config.weight_decay == 2e-4
    model = KVMMN(TINY)
    loss_fn = make_loss_fn(config, model)
    with tf.GradientTape() as tape:
        regularization = loss_fn(model, batch(np.random.default_rng(0)))["regularization_loss"]
    decayed = [v for v in model.trainable_variables if len(v.shape) >= 2]
    assert len(decayed) >= 10 and len(decayed) < len(model.trainable_variables)  # biases and BN are spared
    expected = 2e-4 * sum(float(np.sum(v.numpy().astype(np.float64) ** 2)) / 2 for v in decayed)
    assert float(regularization) == pytest.approx(expected, rel=1e-5)
    # its gradient, which the optimizer adds to the data gradient before the momentum: 2e-4 w on every kernel,
    # nothing on biases, batch-norm gammas and betas
    for variable, gradient in zip(model.trainable_variables, tape.gradient(regularization, model.trainable_variables)):
        if len(variable.shape) >= 2:
            np.testing.assert_allclose(gradient, 2e-4 * variable.numpy(), rtol=1e-4, atol=1e-12)
        else:
            assert gradient is None or not np.any(gradient), variable.path


# ------------------------------------------------------------------------------------------------ augmentation
@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from data import datasets

    root = str(tmp_path_factory.mktemp("synthetic"))
    datasets.load("synthetic", root, progress=False, **SYNTHETIC)
    return root


def first_training_images(root, train_dir, monkeypatch, **overrides):
    """(images the first step of `train` trained on, the same images un-augmented): probes and gallery sets."""
    seen = {}
    real = training.training_dataset

    def spy(sampler, paths, image_size, start_step, *args, **kwargs):
        dataset = real(sampler, paths, image_size, start_step, *args, **kwargs)
        (probes, galleries), _ = next(iter(dataset))
        probe_index, gallery_index, _ = sampler.batch(start_step)
        seen["images"] = np.concatenate([probes.numpy(), galleries.numpy().reshape(-1, *probes.shape[1:])])
        seen["index"] = np.concatenate([probe_index, gallery_index.reshape(-1)])
        return dataset

    monkeypatch.setattr(training, "training_dataset", spy)
    config = TrainConfig(train_dir=str(train_dir), data_root=root, dataset_options=SYNTHETIC, model=TINY,
                         gallery_size=4, batch_size=4, mining="rand", num_samples=0, max_steps=1, log_every=1,
                         show_progress=False, **overrides)
    training.train(config)
    train_samples = config.load_record().train
    # decoded and resized as the pipeline does, then TF-slim's Inception normalisation x / 127.5 - 1 by hand
    plain = np.stack([resize(decode(train_samples[i].path), TINY.image_size).numpy() for i in seen["index"]])
    plain = plain / 127.5 - 1.0
    return seen["images"], plain


def test_augmentation_reaches_the_training_images_by_default(synthetic_root, tmp_path, monkeypatch):
    assert TrainConfig(train_dir="x").random_erasing and TrainConfig(train_dir="x").random_rotation
    augmented, plain = first_training_images(synthetic_root, tmp_path / "default", monkeypatch)
    changed = np.abs(augmented - plain).reshape(len(plain), -1).max(axis=1) > 1e-3
    assert changed.mean() > 0.5  # rotation moves nearly every image (an angle of exactly 0 is unlikely)
    off, plain = first_training_images(synthetic_root, tmp_path / "noaug", monkeypatch, random_erasing=False,
                                       random_rotation=False)
    np.testing.assert_allclose(off, plain, atol=1e-5)


def test_kvmmn_train_flags_default_to_table_1_and_turn_off_for_noaug():
    from engine import cli
    from kvmmn.cli import train as kvmmn_train

    for argv, expected in ((["--train_dir=x"], True),
                           (["--train_dir=x", "--norandom_erasing", "--norandom_rotation"], False)):
        cli.parse(kvmmn_train.FLAGS, ["kvmmn-train", *argv])
        config = kvmmn_train.config_from_flags()
        assert config.random_erasing is expected and config.random_rotation is expected


# ------------------------------------------------------------------------------------------------ batch norm
def test_training_batch_norm_of_eq_4_shares_statistics_over_o_a_and_o_b():
    """o^A and o^B go through one phi (Eq. 4): in training its batch statistics cover both sides of every pair,
    as one batch norm over W_o^T [r^A] and W_o^T [r^B] together; separate statistics per side are another model."""
    model = KVMMN(TINY)
    rng = np.random.default_rng(3)
    (probe, gallery), _ = batch(rng)
    size, set_size = gallery.shape[:2]
    scores = keras.ops.convert_to_numpy(model((probe, gallery), training=True))

    images = np.concatenate([probe, gallery.reshape(-1, *probe.shape[1:])])
    _, keys, values = model._encode(images, training=True)
    keys_a, values_a = (tf.repeat(t[:size], set_size, axis=0) for t in (keys, values))
    reads = [model.co_attention(keys_a, keys_a, values_a), model.co_attention(keys_a, keys[size:], values[size:])]
    projected = [model.fusion.projection(tf.reshape(r, (*r.shape[:2], -1))).numpy().astype(np.float64)
                 for r in reads]
    norm = model.fusion.phi.batch_norm
    gamma, beta = norm.gamma.numpy(), norm.beta.numpy()

    def phi(x, reference):
        flat = reference.reshape(-1, x.shape[-1])
        return np.maximum((x - flat.mean(0)) / np.sqrt(flat.var(0) + norm.epsilon) * gamma + beta, 0.0)

    def scored(o_a, o_b):
        comparison = model.comparison(tf.constant(o_a, tf.float32), tf.constant(o_b, tf.float32), training=True)
        return keras.ops.convert_to_numpy(model.matching_score(comparison)).reshape(size, set_size)

    both = np.concatenate(projected)
    joint = scored(phi(projected[0], both), phi(projected[1], both))
    separate = scored(phi(projected[0], projected[0]), phi(projected[1], projected[1]))
    np.testing.assert_allclose(scores, joint, rtol=1e-4, atol=1e-5)
    assert not np.allclose(separate, joint, rtol=1e-3, atol=1e-4)  # the test can tell the two apart
