"""ACP training: the sequence sampler of Sec. IV-B2 (acp.sequences) and the resumable training loop (acp.train)."""
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from acp import checkpoint as acp_checkpoint
from acp import losses, sequences
from acp import model as acp_model
from acp import training
from engine.seed import set_seed
from engine.train_loop import LoopConfig
from features import feature_file as feature_files

# Probes on a line: distances are |x_i - x_j|, so every neighbour list is known by hand.
POSITIONS = np.array([0.0, 1.0, 2.4, 4.0, 4.2, 7.1, 9.0, 9.5, 12.0, 15.3], np.float32)
PIDS = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])


def line_embedding():
    return np.stack([POSITIONS, np.zeros_like(POSITIONS)], axis=1)


def ranked(probe):
    """Other images by distance to `probe` (ties by index), as a list."""
    order = np.argsort(np.abs(POSITIONS - POSITIONS[probe]), kind="stable")
    return [int(i) for i in order if i != probe]


def test_pools_are_correct_matches_within_k_plus_first_false_matches():
    config = sequences.SequenceConfig(num_neighbours=6, length=3, num_false=2, metric="euclidean")
    pools = sequences.mine_pools(line_embedding(), PIDS, config, chunk_size=3)
    assert pools.num_neighbours == 6 and pools.num_probes == len(PIDS)
    for probe in range(len(PIDS)):
        neighbours = ranked(probe)[:6]
        matches = [j for j in neighbours if PIDS[j] == PIDS[probe]]
        false = [j for j in neighbours if PIDS[j] != PIDS[probe]][:2]
        expected = [j for j in neighbours if j in matches or j in false]  # their union, nearest first
        members, is_match = pools.pool(probe)
        assert list(members) == expected, probe
        np.testing.assert_array_equal(is_match, PIDS[members] == PIDS[probe])


def test_sequences_start_with_the_probe_are_ranked_and_labelled():
    config = sequences.SequenceConfig(num_neighbours=9, length=4, num_false=3, refinement_length=2,
                                      metric="euclidean")
    pools = sequences.mine_pools(line_embedding(), PIDS, config)
    sampler = sequences.SequenceSampler(pools, config, batch_size=4, seed=3)
    tables = {"embedding": line_embedding()}
    for step in range(6):
        batch = sampler.batch(step, tables)
        indices, labels = sampler.sequences(step)
        assert indices.shape == labels.shape == (4, 5)
        np.testing.assert_array_equal(batch["k2"], [2, 2, 2, 2])
        np.testing.assert_array_equal(batch["mask"], labels != losses.IGNORE_LABEL)
        np.testing.assert_array_equal(batch["embedding"], line_embedding()[indices])
        for row, probe in zip(range(4), sampler.probes(step)):
            assert indices[row, 0] == probe and labels[row, 0] == 1
            members = indices[row, 1:][labels[row, 1:] != losses.IGNORE_LABEL]
            pool = list(pools.pool(probe)[0])
            assert len(members) == min(4, len(pool)) and set(members) <= set(pool)
            assert len(set(members)) == len(members)
            positions = [pool.index(m) for m in members]
            assert positions == sorted(positions)  # ordered by distance to the probe
            np.testing.assert_array_equal(labels[row, 1:1 + len(members)], PIDS[members] == PIDS[probe])


def test_short_pools_are_padded_and_the_epoch_visits_every_probe():
    config = sequences.SequenceConfig(num_neighbours=3, length=6, num_false=1, metric="euclidean")
    pools = sequences.mine_pools(line_embedding(), PIDS, config)
    sampler = sequences.SequenceSampler(pools, config, batch_size=5, seed=0)
    assert sampler.steps_per_epoch == 2
    assert sorted(np.concatenate([sampler.probes(0), sampler.probes(1)])) == list(range(10))
    indices, labels = sampler.sequences(0)
    for row in range(5):
        real = labels[row] != losses.IGNORE_LABEL
        count = len(pools.pool(indices[row, 0])[0])
        assert real.sum() == 1 + count and not real[1 + count:].any()  # padding only at the end
        assert (indices[row, 1 + count:] == 0).all()


def test_sampler_is_a_pure_function_of_seed_and_step():
    config = sequences.SequenceConfig(num_neighbours=9, length=3, num_false=2, metric="euclidean")
    pools = sequences.mine_pools(line_embedding(), PIDS, config)
    first = sequences.SequenceSampler(pools, config, batch_size=4, seed=7)
    again = sequences.SequenceSampler(pools, config, batch_size=4, seed=7)
    for step in (0, 5, 1234):  # a resumed run rebuilds the sampler and continues at any step
        for a, b in zip(first.sequences(step), again.sequences(step)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.sequences(0)[0], first.sequences(1)[0])
    other = sequences.SequenceSampler(pools, config, batch_size=4, seed=8)
    assert not all(np.array_equal(first.sequences(s)[0], other.sequences(s)[0]) for s in range(4))


def test_k_is_capped_on_small_sets(caplog):
    config = sequences.SequenceConfig(num_neighbours=1000, length=3, num_false=1000, metric="euclidean")
    with caplog.at_level(logging.WARNING):
        pools = sequences.mine_pools(line_embedding(), PIDS, config)
    assert pools.num_neighbours == 9 and "using K=9" in caplog.text
    assert all(len(pools.pool(p)[0]) == 9 for p in range(10))  # everyone else is in every pool
    with pytest.raises(ValueError, match="at least 2 training images"):
        sequences.mine_pools(line_embedding()[:1], PIDS[:1], config)


def test_probe_first_handles_duplicates_that_tie_with_the_probe():
    indices = np.array([[1, 0, 2], [0, 1, 2], [0, 1, 3]])
    np.testing.assert_array_equal(sequences.probe_first(indices, np.array([0, 1, 2])),
                                  [[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    duplicated = np.ones((4, 2), np.float32)
    pools = sequences.mine_pools(duplicated, np.array([0, 0, 1, 1]),
                                 sequences.SequenceConfig(num_neighbours=3, metric="euclidean"))
    assert all(p not in pools.pool(p)[0] for p in range(4))  # a probe never appears in its own pool


def test_pools_are_cached_per_features_and_settings(tmp_path, monkeypatch):
    config = sequences.SequenceConfig(num_neighbours=5, num_false=2, metric="euclidean")
    first = sequences.load_or_mine_pools(str(tmp_path), line_embedding(), PIDS, config)

    def must_not_mine(*args, **kwargs):
        raise AssertionError("the cached pools should have been read")

    with monkeypatch.context() as patch:
        patch.setattr(sequences, "mine_pools", must_not_mine)
        cached = sequences.load_or_mine_pools(str(tmp_path), line_embedding(), PIDS, config)
    for a, b in zip(first[:3], cached[:3]):
        np.testing.assert_array_equal(a, b)
    changed = sequences.load_or_mine_pools(str(tmp_path), line_embedding(), PIDS,
                                           sequences.SequenceConfig(num_neighbours=5, num_false=0,
                                                                    metric="euclidean"))
    assert PIDS[changed.members].tolist() != PIDS[first.members].tolist()
    assert changed.matches.all()


# ----------------------------------------------------------------------------------------------- training
TINY = dict(num_layers=1, memory_size=4, num_heads=4, memory_dim=8, model_dim=32, fusion_dropout=0.0,
            transformer_dropout=0.0, use_fusion=False)


def separable_features(num_ids=12, per_id=6, dim=16, scale=6.0, seed=0):
    """Identities as noisy one-hot directions: whether a neighbour shares the probe's identity is plain in the
    features, so a few dozen steps must teach ACP to tell correct from false matches."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(num_ids), per_id)
    embedding = (scale * np.eye(dim)[pids] + rng.normal(size=(len(pids), dim))).astype(np.float32)
    return feature_files.FeatureSet(embedding=embedding, pid=pids, camid=np.arange(len(pids)) % 3,
                               split=np.zeros(len(pids), np.int8), origin="separable")


RECIPE = training.Recipe(batch_size=8, learning_rate=2e-3, warmup_epochs=1, epochs=1,
                         sequences=sequences.SequenceConfig(num_neighbours=20, length=9, num_false=5))


def correlations_by_label(model, sampler, tables, step=500):
    """Mean predicted s of the correct and of the false matches (probe rows left out) of a held-out batch."""
    batch = sampler.batch(step, tables)
    s = np.asarray(model({name: batch[name] for name in acp_model.input_names(model)}, training=False))
    labels = batch["labels"][:, 1:]
    return float(s[:, 1:][labels == 1].mean()), float(s[:, 1:][labels == 0].mean())


def weights(model):
    return [np.array(v) for v in model.weights]


def test_training_learns_correlations_and_resumes_exactly(tmp_path):
    data = separable_features()
    config = acp_model.make_config("basic", **TINY)
    fitted = training.fit_to_features(config, data)
    assert fitted.embedding_dim == 16

    def run(train_dir, max_steps):
        set_seed(0)
        loop = LoopConfig(str(train_dir), max_steps, checkpoint_every=1000, log_every=10, show_progress=False)
        return training.train(data, loop, "basic", config, RECIPE, seed=1, verbose=0)

    interrupted = run(tmp_path / "a", 40)
    assert interrupted["step"] == 40 and interrupted["steps_per_epoch"] == 9
    resumed = run(tmp_path / "a", 100)
    straight = run(tmp_path / "b", 100)
    assert resumed["step"] == straight["step"] == 100
    for a, b in zip(weights(resumed["model"]), weights(straight["model"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    set_seed(0)
    initial = acp_model.build_acp(fitted)  # the weights training started from
    pools = sequences.load_or_mine_pools(str(tmp_path / "b"), data.embedding, data.pid, RECIPE.sequences)
    sampler = sequences.SequenceSampler(pools, RECIPE.sequences, batch_size=64, seed=99)
    tables = training.model_tables(data, fitted)
    positive, negative = correlations_by_label(initial, sampler, tables)
    assert abs(positive - negative) < 0.05  # untrained: no idea who matches
    positive, negative = correlations_by_label(straight["model"], sampler, tables)
    assert positive > negative + 0.3, (positive, negative)

    with pytest.raises(acp_checkpoint.CheckpointMismatchError, match=r"holds ACP-basic with .*num_layers': 1.*"
                                                                     r"asks for ACP-xl"):
        training.train(data, LoopConfig(str(tmp_path / "a"), 200), "xl", acp_model.make_config("xl", **TINY),
                       RECIPE)


def test_optimizer_warms_up_over_epochs_with_l2_or_decoupled_decay():
    recipe = training.Recipe(learning_rate=1.0, warmup_epochs=2, warmup_factor=0.1)
    schedule = recipe.schedule(steps_per_epoch=5)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 5, 10, 50)], [0.1, 0.55, 1.0, 1.0], rtol=1e-5)
    assert recipe.optimizer(5).weight_decay is None  # PyTorch-Adam L2: a loss term, see make_loss_fn
    assert training.Recipe(decoupled_weight_decay=True).optimizer(5).weight_decay == pytest.approx(5e-4)

    keras.utils.set_random_seed(0)
    model = acp_model.build_acp(acp_model.make_config("basic", **TINY, embedding_dim=2))
    batch = sequences.SequenceSampler(
        sequences.mine_pools(line_embedding(), PIDS, sequences.SequenceConfig(num_neighbours=9, length=3)),
        sequences.SequenceConfig(length=3), batch_size=2).batch(0, {"embedding": line_embedding()})
    decayed = training.make_loss_fn(2.0, 0.1)(model, batch)
    plain = training.make_loss_fn(2.0, 0.0)(model, batch)
    squares = sum(float(np.sum(np.square(v))) for v in model.trainable_weights)
    assert float(decayed["regularization_loss"]) == pytest.approx(0.05 * squares, rel=1e-5)
    assert "regularization_loss" not in plain
    np.testing.assert_allclose(decayed["per_example_loss"], plain["per_example_loss"], rtol=1e-6)


def test_training_refuses_files_without_what_the_model_reads():
    data = separable_features()
    with pytest.raises(ValueError, match="has no multi-block features.*use_fusion=false"):
        training.model_tables(data, acp_model.make_config("basic"))
    with pytest.raises(ValueError, match="field 'embedding' has width 16, but the ACP model expects 12"):
        training.model_tables(data, acp_model.make_config("basic", **TINY, embedding_dim=12))
