"""Training says whether it learns: logged values are means over the log interval, ACP logs metrics that class
imbalance cannot fool, and --eval_every evaluates held-out training identities into TensorBoard."""
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from acp import sequences, training
from acp import model as acp_model
from data.record import Sample
from engine import distribute, summaries, train_loop, validation
from engine.seed import set_seed
from features import feature_file as feature_files

# ----------------------------------------------------------------------------------------------- running means
SIGNATURE = tf.TensorSpec([], tf.float32)


def value_of_step(step):
    return np.float32(step * step)


def fit_known_values(train_dir, max_steps, log_every, show_progress=True, hooks=()):
    """A Trainer whose step reports the batch it is given: step s reports s^2."""
    strategy = distribute.make_strategy("one_device")
    with strategy.scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        optimizer = keras.optimizers.SGD(0.1)
    config = train_loop.LoopConfig(str(train_dir), max_steps, checkpoint_every=100, log_every=log_every,
                                   show_progress=show_progress)
    trainer = train_loop.Trainer(strategy, model, optimizer, config, step_fn=lambda value: {"value": value},
                                 hooks=hooks)
    return trainer.fit(lambda start: train_loop.steps_dataset(value_of_step, start, max_steps, SIGNATURE))


def test_logged_values_are_means_over_the_log_interval(tmp_path, capsys, caplog):
    seen = []
    result = fit_known_values(tmp_path / "run", 10, 4, hooks=[lambda step, metrics: seen.append((step, metrics))])
    # steps 1..4 report 0, 1, 4, 9; steps 5..8 report 16, 25, 36, 49; steps 9, 10 report 64, 81
    expected = [(4, 3.5), (8, 31.5), (10, 72.5)]
    assert summaries.read_scalars(str(tmp_path / "run" / "train"))["value"] == expected
    assert result["metrics"]["value"] == 72.5
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == ["4/10", "8/10", "10/10"]
    assert "value 3.5 " in printed[0] and "value 31.5 " in printed[1]
    logged = [(step, metrics["value"]) for step, metrics in seen if metrics]
    assert logged == expected and len(seen) == 10  # hooks see every step, the means at the logging steps
    # without a progress bar the same means go to the absl log
    # absl's logger keeps its own level (from --verbosity once any test parsed flags): set it for this block
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with caplog.at_level(logging.INFO):
            fit_known_values(tmp_path / "quiet", 8, 4, show_progress=False)
    finally:
        absl_logging.set_verbosity(verbosity)
    assert "step 4/8: value 3.5" in caplog.text and "step 8/8: value 31.5" in caplog.text


# ----------------------------------------------------------------------------------------------- ACP's metrics
def test_correlation_metrics_are_not_fooled_by_imbalance():
    rng = np.random.default_rng(0)
    labels = (rng.random((16, 25)) < 0.08).astype(np.float32)
    labels[:, -3:] = -1  # padding
    all_negative = np.full(labels.shape, 0.1, np.float32)
    metrics = {name: float(v) for name, v in training.correlation_metrics(labels, all_negative).items()}
    real = labels != -1
    accuracy = float(((all_negative > 0.5) == (labels == 1))[real].mean())
    assert accuracy > 0.9  # what the old "accuracy" reported for a predictor that learnt nothing
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["average_precision"] == pytest.approx(labels[real].mean(), rel=1e-5)  # the share of matches
    # a perfect ranking: AP 1 and balanced accuracy 1, whatever the padding scores
    perfect = np.where(labels == 1, 0.9, 0.2).astype(np.float32)
    perfect[~real] = 0.99
    metrics = training.correlation_metrics(labels, perfect)
    assert float(metrics["balanced_accuracy"]) == 1.0 and float(metrics["average_precision"]) == 1.0
    # ties count as one threshold (scikit-learn's rule): precision 1 at 0.9, then 2/3 at the tied 0.8
    tied = training.correlation_metrics(np.array([[1, 0, 1, 0]]), np.array([[0.9, 0.8, 0.8, 0.1]]))
    assert float(tied["average_precision"]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert float(tied["balanced_accuracy"]) == pytest.approx(0.75)  # TPR 1, TNR 1/2
    # the same numbers inside an XLA-compiled step
    compiled = tf.function(training.correlation_metrics, jit_compile=True)(labels, all_negative)
    assert float(compiled["average_precision"]) == pytest.approx(labels[real].mean(), rel=1e-5)


def test_acp_loss_fn_logs_balanced_accuracy_and_average_precision_not_accuracy():
    keras.utils.set_random_seed(0)
    model = acp_model.build_acp(acp_model.make_config("basic", **TINY, embedding_dim=16))
    data = separable_features()
    pools = sequences.mine_pools(data.embedding, data.pid, RECIPE.sequences)
    batch = sequences.SequenceSampler(pools, RECIPE.sequences, batch_size=4).batch(0, {"embedding": data.embedding})
    outputs = training.make_loss_fn(2.0, 0.0)(model, batch)
    assert {"balanced_accuracy", "average_precision", "focal_loss"} <= set(outputs) and "accuracy" not in outputs


# ----------------------------------------------------------------------------------------------- --eval_every
TINY = dict(num_layers=1, memory_size=4, num_heads=4, memory_dim=8, model_dim=32, fusion_dropout=0.0,
            transformer_dropout=0.0, use_fusion=False)
RECIPE = training.Recipe(batch_size=8, learning_rate=2e-3, warmup_epochs=1, epochs=1,
                         sequences=sequences.SequenceConfig(num_neighbours=20, length=9, num_false=5))


def separable_features(num_ids=24, per_id=6, dim=16, scale=6.0, seed=0):
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(num_ids), per_id) + 100
    embedding = (scale * np.eye(dim)[pids % dim] + rng.normal(size=(len(pids), dim))).astype(np.float32)
    return feature_files.FeatureSet(embedding=embedding, pid=pids, camid=np.arange(len(pids)) % 3,
                               split=np.zeros(len(pids), np.int8), origin="separable")


def test_held_out_identities_are_seeded_disjoint_and_opt_in():
    pids = np.repeat(np.arange(40), 3)
    held = validation.hold_out(pids, seed=0)
    assert len(set(pids[held])) == validation.num_held_out(40) == 4
    assert not set(pids[held]) & set(pids[~held])  # whole identities: none is in both
    np.testing.assert_array_equal(held, validation.hold_out(pids, seed=0))
    assert not np.array_equal(held, validation.hold_out(pids, seed=1))
    samples = [Sample(f"{pid}_{i}.jpg", int(pid), i % 2) for i, pid in enumerate(pids)]
    train, held_out = validation.split_samples(samples, seed=0)
    assert not {s.path for s in train} & {s.path for s in held_out}
    assert len(train) + len(held_out) == len(samples)
    assert sorted({s.pid for s in train}) == list(range(36))  # relabelled for a classifier
    query, gallery = validation.split_query_gallery(held_out)
    for q in query:  # every query's identity is in the gallery, on another camera only
        matches = [g for g in gallery if g.pid == q.pid]
        assert matches and all(g.camid != q.camid for g in matches)
    with pytest.raises(ValueError, match="train without --eval_every"):
        validation.num_held_out(3)
    assert training.Recipe().eval_every == 0


def test_acp_eval_every_writes_validation_scalars_and_trains_without_the_held_out(tmp_path, monkeypatch, capsys):
    data = separable_features()
    mined_pids = []
    mine = sequences.load_or_mine_pools

    def recording(directory, embedding, pids, *args, **kwargs):
        mined_pids.append(np.asarray(pids))
        return mine(directory, embedding, pids, *args, **kwargs)

    monkeypatch.setattr(sequences, "load_or_mine_pools", recording)
    set_seed(0)
    loop = train_loop.LoopConfig(str(tmp_path / "acp"), 6, checkpoint_every=100, log_every=3, show_progress=False)
    recipe = training.Recipe(**{**RECIPE.__dict__, "eval_every": 3})
    result = training.train(data, loop, "basic", acp_model.make_config("basic", **TINY), recipe, seed=4, verbose=0)
    held = validation.hold_out(data.pid, 4)
    assert held.any() and not set(mined_pids[0]) & set(data.pid[held])  # never trained on
    assert set(mined_pids[0]) == set(data.pid[~held])
    scalars = summaries.read_scalars(str(tmp_path / "acp" / "train"))
    for name in ("val/mAP", "val/rank1", "val/baseline_mAP", "val/baseline_rank1"):
        assert [step for step, _ in scalars[name]] == [3, 6], name
        assert all(0.0 < value <= 1.0 for _, value in scalars[name])
    assert [step for step, _ in result["validation"]] == [3, 6]
    assert "step 6 validation: mAP" in capsys.readouterr().out
    # the un-reranked validation mAP is the embedding's own ranking of the held-out identities
    rows = data.select(held)
    is_query = validation.query_mask(rows.pid, rows.camid)
    from rerank.evaluation import evaluate_features
    expected = evaluate_features(rows.embedding[is_query], rows.embedding[~is_query], rows.pid[is_query],
                                 rows.pid[~is_query], rows.camid[is_query], rows.camid[~is_query], metric="cosine")
    assert scalars["val/baseline_mAP"][0][1] == pytest.approx(expected["mAP"], rel=1e-5)
