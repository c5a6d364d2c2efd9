"""engine/: strategies, distributed-step equivalence, resume after a kill, summaries, progress (the flag sets are
tested in tests/test_cli.py)."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine import distribute, precision, schedules, state, summaries, train_loop
from engine.progress import ProgressBar

GLOBAL_BATCH = 8
SIGNATURE = (tf.TensorSpec((GLOBAL_BATCH, 4), tf.float32), tf.TensorSpec((GLOBAL_BATCH,), tf.int32))


def batch_for_step(step):
    rng = np.random.default_rng([7, step])
    return rng.normal(size=(GLOBAL_BATCH, 4)).astype("float32"), rng.integers(0, 3, GLOBAL_BATCH).astype("int32")


def make_data(stop):
    return lambda start: train_loop.steps_dataset(batch_for_step, start, stop, SIGNATURE)


def classification_loss(model, batch):
    images, labels = batch
    logits = model(images, training=True)
    per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return {"per_example_loss": per_example, "accuracy": tf.reduce_mean(
        tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))}


def build(strategy, weights=None, synchronized_bn=False, optimizer="sgd", width=8):
    with strategy.scope():
        layers = [keras.Input((4,)), keras.layers.Dense(width, kernel_regularizer=keras.regularizers.L2(1e-2))]
        if synchronized_bn:
            layers.append(keras.layers.BatchNormalization(synchronized=True))
        layers += [keras.layers.ReLU(), keras.layers.Dense(3)]
        model = keras.Sequential(layers)
        opt = keras.optimizers.SGD(0.5) if optimizer == "sgd" else keras.optimizers.Adam(0.05)
    if weights is not None:
        model.set_weights(weights)
    return model, opt


def config(tmp_path, name, max_steps, **kw):
    return train_loop.LoopConfig(str(tmp_path / name), max_steps, show_progress=False, **kw)


def test_strategies_see_the_two_logical_cpus():
    assert distribute.make_strategy("one_device").num_replicas_in_sync == 1
    assert distribute.make_strategy("mirrored").num_replicas_in_sync == 2
    with pytest.raises(distribute.StrategyError, match="unknown --strategy"):
        distribute.make_strategy("parameter_server")


@pytest.mark.parametrize("synchronized_bn", [False, True])
def test_mirrored_step_equals_one_device_step_on_the_global_batch(tmp_path, synchronized_bn):
    reference = build(distribute.make_strategy("one_device"), synchronized_bn=synchronized_bn)[0].get_weights()
    results = {}
    for name in ("one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        model, opt = build(strategy, reference, synchronized_bn=synchronized_bn)
        trainer = train_loop.Trainer(strategy, model, opt, config(tmp_path, name, 2), loss_fn=classification_loss)
        out = trainer.fit(make_data(2))
        results[name] = (model.get_weights(), out["metrics"]["loss"])
    (single, single_loss), (mirrored, mirrored_loss) = results["one_device"], results["mirrored"]
    assert any(not np.allclose(w, r) for w, r in zip(single, reference))  # the step did move the weights
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert mirrored_loss == pytest.approx(single_loss, abs=1e-5)


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    strategy = distribute.make_strategy("mirrored")
    reference = build(strategy, optimizer="adam")[0].get_weights()

    def run(name, stop_after=None, weights=reference):
        model, opt = build(strategy, weights, optimizer="adam")
        counter = state.ArrayState(steps_seen=np.int64(0))

        def count(step, metrics):
            counter["steps_seen"] = counter["steps_seen"] + 1
            if step == stop_after:
                raise KeyboardInterrupt  # a kill: no final checkpoint is written

        trainer = train_loop.Trainer(strategy, model, opt, config(tmp_path, name, 10, checkpoint_every=3),
                                     loss_fn=classification_loss, trackables={"counter": counter}, hooks=[count])
        trainer.fit(make_data(10))
        return model, opt, counter

    full_model, full_opt, full_counter = run("full")
    with pytest.raises(KeyboardInterrupt):
        run("killed", stop_after=7)
    assert tf.train.latest_checkpoint(str(tmp_path / "killed")).endswith("ckpt-6")
    # the restarted process builds fresh, differently initialised objects: all state must come from the checkpoint
    fresh = build(strategy, optimizer="adam")[0].get_weights()
    resumed_model, resumed_opt, resumed_counter = run("killed", weights=fresh)
    for a, b in zip(full_model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(resumed_opt.iterations.numpy()) == int(full_opt.iterations.numpy()) == 10
    assert int(resumed_counter["steps_seen"]) == int(full_counter["steps_seen"]) == 10


def test_summaries_progress_and_final_checkpoint(tmp_path, capsys):
    strategy = distribute.make_strategy("one_device")
    model, opt = build(strategy)
    cfg = train_loop.LoopConfig(str(tmp_path / "run"), 6, checkpoint_every=100, log_every=3)
    train_loop.Trainer(strategy, model, opt, cfg, loss_fn=classification_loss).fit(make_data(6))
    scalars = summaries.read_scalars(str(tmp_path / "run" / "train"))
    assert {"loss", "lr", "steps_per_sec", "accuracy"} <= set(scalars)
    assert [step for step, _ in scalars["loss"]] == [3, 6]
    assert scalars["lr"][0][1] == pytest.approx(0.5)
    printed = capsys.readouterr().out
    assert "step 6/6" in printed and "steps/s" in printed and "ETA" in printed and "loss" in printed
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-6")  # saved at the end


def test_finished_run_does_nothing_and_other_configuration_is_refused(tmp_path):
    strategy = distribute.make_strategy("one_device")
    model, opt = build(strategy)
    train_loop.Trainer(strategy, model, opt, config(tmp_path, "run", 2), loss_fn=classification_loss).fit(
        make_data(2))
    model, opt = build(strategy)
    out = train_loop.Trainer(strategy, model, opt, config(tmp_path, "run", 2),
                             loss_fn=classification_loss).fit(make_data(2))
    assert out["step"] == 2 and out["metrics"] == {}
    wider, opt = build(strategy, width=16)
    with pytest.raises(train_loop.RestoreError, match="does not match"):
        train_loop.Trainer(strategy, wider, opt, config(tmp_path, "run", 4), loss_fn=classification_loss).fit(
            make_data(4))


def test_model_outside_the_strategy_scope_is_refused(tmp_path):
    model, opt = build(tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="strategy.scope"):
        train_loop.Trainer(distribute.make_strategy("mirrored"), model, opt, config(tmp_path, "x", 1),
                           loss_fn=classification_loss)


def test_xla_and_float16_loss_scaling_give_finite_updates(tmp_path):
    strategy = distribute.make_strategy("one_device")
    reference = build(strategy)[0].get_weights()
    model, opt = build(strategy, reference)
    train_loop.Trainer(strategy, model, opt, config(tmp_path, "plain", 2), loss_fn=classification_loss).fit(
        make_data(2))
    xla_model, opt = build(strategy, reference)
    train_loop.Trainer(strategy, xla_model, opt, config(tmp_path, "xla", 2, xla=True),
                       loss_fn=classification_loss).fit(make_data(2))
    for a, b in zip(model.get_weights(), xla_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    try:
        precision.set_policy("mixed_float16")
        half, opt = build(strategy, reference)
        opt = precision.wrap_optimizer(opt)
        assert isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
        out = train_loop.Trainer(strategy, half, opt, config(tmp_path, "half", 2),
                                 loss_fn=classification_loss).fit(make_data(2))
    finally:
        precision.set_policy("float32")
    assert np.isfinite(out["metrics"]["loss"])
    assert all(w.dtype == np.float32 for w in half.get_weights())
    np.testing.assert_allclose(half.get_weights()[0], model.get_weights()[0], atol=2e-2)
    with pytest.raises(ValueError, match="mixed_precision"):
        precision.set_policy("float8")


def test_step_fn_mode_averages_replica_metrics(tmp_path):
    strategy = distribute.make_strategy("mirrored")
    model, opt = build(strategy)

    def step_fn(batch):
        images, _ = batch
        return {"rows": tf.cast(tf.shape(images)[0], tf.float32)}

    out = train_loop.Trainer(strategy, model, opt, config(tmp_path, "custom", 1), step_fn=step_fn).fit(make_data(1))
    assert out["metrics"]["rows"] == GLOBAL_BATCH / 2  # each replica got half of the global batch


@pytest.mark.parametrize("raw, field", [
    (None, "TF_CONFIG environment variable"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "'cluster'"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "cluster.worker"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}', "'task'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task.type"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "task.index"),
])
def test_multi_worker_needs_a_well_formed_tf_config(monkeypatch, raw, field):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if raw is not None:
        monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(distribute.StrategyError, match=field.replace(".", r"\.").replace("(", r"\(")):
        distribute.make_strategy("multi_worker")


def test_well_formed_tf_config_is_parsed():
    raw = json.dumps({"cluster": {"worker": ["h1:1", "h2:1"]}, "task": {"type": "worker", "index": 1}})
    assert distribute.parse_tf_config(raw)["task"]["index"] == 1


def test_linear_warmup_schedule():
    schedule = schedules.LinearWarmup(keras.optimizers.schedules.PiecewiseConstantDecay([20], [1.0, 0.1]),
                                      warmup_steps=10, warmup_factor=0.1)
    values = [float(schedule(step)) for step in (0, 5, 10, 15, 25)]
    np.testing.assert_allclose(values, [0.1, 0.55, 1.0, 1.0, 0.1], rtol=1e-6)
    clone = schedules.LinearWarmup.from_config(schedule.get_config())
    assert float(clone(5)) == pytest.approx(0.55)
    assert float(schedules.LinearWarmup(2.0, 0)(0)) == 2.0
    with pytest.raises(ValueError, match="warmup_factor"):
        schedules.LinearWarmup(1.0, 5, warmup_factor=2.0)


def test_array_state_round_trips_through_a_checkpoint(tmp_path):
    saved = state.ArrayState(table=np.arange(6).reshape(2, 3), rng=np.array([1, 2], np.uint64))
    path = tf.train.Checkpoint(sampler=saved).save(str(tmp_path / "ckpt"))
    restored = state.ArrayState()
    tf.train.Checkpoint(sampler=restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(restored["table"], saved["table"])
    assert restored["rng"].dtype == np.uint64


def test_progress_bar_reports_rate_and_eta(monkeypatch):
    import io
    clock = iter([100.0, 102.0])
    monkeypatch.setattr("engine.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    bar = ProgressBar(target=30, initial=10, stream=stream)
    bar.update(10)
    line = bar.update(20, {"loss": 0.25}, force=True)
    assert line == "step 20/30 [================........] loss 0.25 5.00 steps/s ETA 0:00:02"
    assert stream.getvalue() == line + "\n"


@pytest.mark.parametrize("package", ["acp", "kvmmn", "engine"])
@pytest.mark.parametrize("user_setting,expected", [(None, "1"), ("0", "0")])
def test_importing_a_package_turns_onednn_on_before_tensorflow_loads_unless_the_user_chose(package, user_setting,
                                                                                           expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_setting
    code = f"import os, {package}; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
