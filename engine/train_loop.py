"""The resumable, distributed custom training loop shared by every training binary.

A `Trainer` owns the step counter, a `tf.train.Checkpoint(step, model, optimizer, random_states, **trackables)`
saved in `config.train_dir` by `engine.run_dir` (atomically; resumed from the newest checkpoint that reads back),
the TensorBoard writer (`<train_dir>/train`) and the progress bar. `fit(make_data)` restores the latest
checkpoint, asks `make_data(start_step)` for the batches of the remaining steps, and runs one `tf.function` step
per batch until `config.max_steps`.

Deterministic resume (bit-exact on CPU: `tests/test_faults*.py` kill runs with SIGKILL and compare): the data
position is not read back from an iterator but recomputed from the restored step: `make_data(start_step)` must
return exactly the batches an uninterrupted run would see from that step on. Samplers that are pure functions of
(seed, step) do this for free (`steps_dataset`); state that a sampler accumulates (e.g. a mined hard-negative
table) goes into the checkpoint as an extra trackable (a tf.Variable or an `engine.state.ArrayState`), saved
atomically with the weights. The model's random state is checkpointed too: Keras layers that draw random numbers
(dropout) keep a `SeedGenerator` whose state is a variable outside `model.weights`, which TensorFlow's checkpoint
graph does not reach through the layer (`engine.checkpoints.random_states`).

Distributed correctness: in `loss_fn` mode each replica's per-example losses are averaged over the GLOBAL batch
(`tf.nn.compute_average_loss`) and regularisation losses are divided by the number of replicas
(`tf.nn.scale_regularization_loss`); the optimizer sums gradients over replicas, so one step on R replicas equals
one step on one device with the same global batch. Layers whose forward pass depends on the batch (batch
normalisation, batch-hard mining) see only their replica's share; use `BatchNormalization(synchronized=True)` for
global statistics.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from engine import checkpoints, distribute, faults, run_dir, summaries
from engine.progress import ProgressBar


@dataclasses.dataclass
class LoopConfig:
    """How long to train and how often to save and log (flags: `engine.cli.define_loop_flags`)."""

    train_dir: str
    max_steps: int
    checkpoint_every: int = 1000
    log_every: int = 100
    keep_checkpoints: int = 3
    xla: bool = False
    show_progress: bool = True

    def __post_init__(self):
        if not self.train_dir:
            raise ValueError("LoopConfig.train_dir is empty: checkpoints and summaries need a directory")
        for name in ("checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoopConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0:
            raise ValueError(f"LoopConfig.max_steps must be >= 0, got {self.max_steps}")


class RestoreError(RuntimeError):
    """The latest checkpoint in train_dir does not belong to this model / optimizer / configuration."""


LossFn = Callable[[keras.Model, object], Mapping[str, tf.Tensor]]
StepFn = Callable[[object], Mapping[str, tf.Tensor]]
Hook = Callable[[int, Mapping[str, float]], None]


def steps_dataset(batch_fn: Callable[[int], tuple], start_step: int, stop_step: int, output_signature,
                  prefetch: int = 2) -> tf.data.Dataset:
    """A dataset of the batches `batch_fn(step)` for step in [start_step, stop_step), computed in Python.

    With a `batch_fn` that is a pure function of the step (seeded by it), a resumed run sees exactly the batches of
    an uninterrupted one, whatever the prefetch depth.
    """

    def generate():
        for step in range(start_step, stop_step):
            yield batch_fn(step)

    return tf.data.Dataset.from_generator(generate, output_signature=output_signature).prefetch(prefetch)


class RunningSums:
    """Per-metric sums of the steps since the last `take`, kept in variables.

    The step function returns its (replica-reduced) metrics as tensors and `add` adds them with eager ops, which
    do not copy anything to the host, so no step waits for it; `take` reads the means over the steps since the
    previous `take` and starts the next interval. Sums are float64, so a long logging interval loses no precision.
    The variables are created here, eagerly, not while the step function is traced: a `tf.function` that creates
    variables in its first trace is traced a second time, which doubled the start-up of every run.
    """

    def __init__(self):
        self.sums: dict[str, tf.Variable] = {}
        self.count = 0

    def add(self, values: Mapping[str, tf.Tensor]) -> None:
        """Add one step's values (eager tensors the step function returned; `count_step` counts the steps)."""
        for name, value in values.items():
            if name not in self.sums:
                self.sums[name] = tf.Variable(0.0, dtype=tf.float64, trainable=False, name=f"sum_{name}")
            self.sums[name].assign_add(tf.cast(value, tf.float64))

    def count_step(self) -> None:
        self.count += 1

    def means(self) -> dict[str, float]:
        """The means over the steps since the last `take` (empty before any step)."""
        if not self.count:
            return {}
        return {name: float(total.numpy()) / self.count for name, total in self.sums.items()}

    def take(self) -> dict[str, float]:
        """`means()`, then start a new interval."""
        means = self.means()
        for total in self.sums.values():
            total.assign(0.0)
        self.count = 0
        return means


class Trainer:
    """Runs a model's training under a strategy, resumably.

    Args:
      strategy: from `engine.distribute.make_strategy`; `model` and `optimizer` must be created under its scope.
      model: a built Keras model (its variables exist).
      optimizer: a Keras optimizer (wrapped in a LossScaleOptimizer under mixed_float16 by
        `engine.precision.wrap_optimizer`).
      config: LoopConfig.
      loss_fn: `loss_fn(model, per_replica_batch) -> {"per_example_loss": [B] tensor, "regularization_loss":
        optional scalar added once per step, other scalar metrics...}`; the Trainer computes gradients, scales
        losses for the global batch and for float16, and applies the update. Reported "loss" is the global-batch
        mean plus regularisation.
      step_fn: instead of loss_fn, a full per-replica step `step_fn(per_replica_batch) -> {name: scalar}` that
        applies its own update (for losses that are not a per-example mean); values are averaged over replicas.
        With `config.xla` the whole step_fn is jit-compiled, so it must not call cross-replica APIs.
      trackables: extra objects saved in the checkpoint (sampler state, EMA weights...), by name.
      hooks: `hook(step, metrics)` called after every step with the step number just completed and, at a logging
        step, the logged metrics (means over the logging interval; an empty dict at other steps); e.g. to refresh
        a sampler's mined table or to evaluate on a validation split (`engine.validation.EvalHook`).
    """

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 config: LoopConfig, *, loss_fn: LossFn | None = None, step_fn: StepFn | None = None,
                 trackables: Mapping[str, object] | None = None, hooks: Sequence[Hook] = ()):
        if (loss_fn is None) == (step_fn is None):
            raise ValueError("Trainer needs exactly one of loss_fn (standard update) or step_fn (custom update)")
        if not model.variables:
            raise ValueError(f"model {model.name!r} has no variables yet: build it (call it on a batch or give it an "
                             "Input) under strategy.scope() before creating the Trainer")
        for variable in model.variables:
            if not strategy.extended.variable_created_in_scope(getattr(variable, "value", variable)):
                raise ValueError(f"variable {variable.path} of model {model.name!r} was not created under "
                                 "strategy.scope(): build the model and optimizer inside `with strategy.scope():`")
        self.strategy, self.model, self.optimizer, self.config = strategy, model, optimizer, config
        self.loss_fn, self.step_fn, self.hooks = loss_fn, step_fn, list(hooks)
        self.is_chief = distribute.is_chief(strategy)
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            if loss_fn is not None:
                optimizer.build(model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=model, optimizer=optimizer,
                                              random_states=checkpoints.random_states(model),
                                              **dict(trackables or {}))
        self._checkpoint_dir = (config.train_dir if self.is_chief else
                                os.path.join(config.train_dir, f".worker{distribute.worker_id(strategy)}_tmp"))
        self._train_function = None
        self._sums = RunningSums()

    # ---------------------------------------------------------------- checkpoints
    def restore(self) -> int:
        """Restore the newest readable checkpoint of train_dir, if any (an unreadable newer one is skipped with a
        warning naming its file: `engine.run_dir.latest_checkpoint`); returns the step to continue from."""
        latest = run_dir.latest_checkpoint(self.config.train_dir)
        if latest is None:
            return 0
        try:
            # strict: every variable of the model and optimizer, the step and the trackables must come back
            checkpoints.restore(self.checkpoint, latest)
        except (ValueError, tf.errors.InvalidArgumentError) as err:
            raise RestoreError(f"checkpoint {latest} does not match this model/optimizer/configuration "
                               f"(another --train_dir or another configuration?): {err}") from err
        step = int(self.step.numpy())
        logging.info("restored %s at step %d", latest, step)
        return step

    def save(self) -> str:
        os.makedirs(self._checkpoint_dir, exist_ok=True)
        path = run_dir.save_checkpoint(self.checkpoint, self._checkpoint_dir, int(self.step.numpy()),
                                       self.config.keep_checkpoints)
        if not self.is_chief:
            shutil.rmtree(self._checkpoint_dir, ignore_errors=True)
        return path

    # ---------------------------------------------------------------- the step
    def _gradients(self, batch):
        with tf.GradientTape() as tape:
            outputs = dict(self.loss_fn(self.model, batch))
            if "per_example_loss" not in outputs:
                raise KeyError("loss_fn must return a dict with 'per_example_loss' (a [batch] tensor)")
            per_example = tf.cast(outputs.pop("per_example_loss"), tf.float32)
            loss = tf.nn.compute_average_loss(per_example)
            regularization = [tf.cast(r, tf.float32) for r in self.model.losses]
            if "regularization_loss" in outputs:
                regularization.append(tf.cast(outputs.pop("regularization_loss"), tf.float32))
            if regularization:
                loss += tf.nn.scale_regularization_loss(tf.add_n(regularization))
            scaled = (self.optimizer.scale_loss(loss)
                      if isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer) else loss)
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        return loss, gradients, {name: tf.cast(value, tf.float32) for name, value in outputs.items()}

    def _build_train_function(self):
        strategy, xla = self.strategy, self.config.xla
        if self.loss_fn is not None:
            gradients_fn = tf.function(self._gradients, jit_compile=True) if xla else self._gradients

            def replica_step(batch):
                loss, gradients, metrics = gradients_fn(batch)
                self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
                return loss, metrics
        else:
            user_step = tf.function(self.step_fn, jit_compile=True) if xla else self.step_fn

            def replica_step(batch):
                return None, dict(user_step(batch))

        def train_function(batch):
            loss, metrics = strategy.run(replica_step, args=(batch,))
            mean = tf.distribute.ReduceOp.MEAN
            reduced = {name: strategy.reduce(mean, value, axis=None) for name, value in metrics.items()}
            if loss is not None:
                # each replica's loss is already divided by the global batch: their sum is the global mean
                reduced = {"loss": strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), **reduced}
            self.step.assign_add(1)
            return reduced

        return tf.function(train_function, reduce_retracing=True)

    def _learning_rate(self) -> float:
        return float(np.asarray(keras.ops.convert_to_numpy(self.optimizer.learning_rate)))

    # ---------------------------------------------------------------- the loop
    def _distributed_batches(self, make_data, step: int):
        dataset = make_data(step)
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(f"make_data must return a tf.data.Dataset, got {type(dataset).__name__}")
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(options)))

    def fit(self, make_data: Callable[[int], tf.data.Dataset]) -> dict:
        """Restore, then train until `config.max_steps`; returns {"step", "metrics" (the last logged, floats)}.

        `make_data(start_step)` returns a `tf.data.Dataset` of GLOBAL batches for the steps from `start_step` on
        (it is split across replicas here). It may cover only some of them (e.g. the rest of an epoch): when it
        ends, `make_data` is called again with the next step; an empty dataset stops training with a warning.

        Every value logged (TensorBoard scalar, progress line, absl log line) is the mean over the steps since the
        previous log, not the value of the logging step's batch: one batch's loss or accuracy is too noisy to say
        whether the model learns. `lr` is the rate at the logging step.
        """
        config = self.config
        start = self.restore()
        if start >= config.max_steps:
            logging.info("%s already holds step %d >= max_steps %d: nothing to train", config.train_dir, start,
                         config.max_steps)
            return {"step": start, "metrics": {}}
        if self._train_function is None:
            self._train_function = self._build_train_function()
        writer = (tf.summary.create_file_writer(os.path.join(config.train_dir, "train")) if self.is_chief
                  else tf.summary.create_noop_writer())
        progress = ProgressBar(config.max_steps, initial=start, enabled=config.show_progress and self.is_chief)
        last_saved, logged = start, {}
        log_time, log_step = time.monotonic(), start
        step, batches, fresh = start, None, False
        self._sums.take()  # an interval starts here, whatever an earlier fit left
        with writer.as_default():
            while step < config.max_steps:
                if batches is None:
                    batches, fresh = self._distributed_batches(make_data, step), True
                batch = next(batches, None)
                if batch is None:
                    if fresh:
                        logging.warning("make_data(%d) of %s gave no batch: stopping before --max_steps=%d", step,
                                        config.train_dir, config.max_steps)
                        break
                    batches = None  # this dataset ended (e.g. an epoch): ask make_data for the next steps
                    continue
                fresh = False
                self._sums.add(self._train_function(batch))
                self._sums.count_step()
                step += 1
                faults.point("step", step)
                log_now = step % config.log_every == 0 or step == config.max_steps
                metrics = {}
                if log_now or progress.due():
                    metrics = self._sums.take() if log_now else self._sums.means()
                    self._check_finite(metrics, step)
                    metrics["lr"] = self._learning_rate()
                if log_now:
                    now = time.monotonic()
                    interval = step - log_step
                    steps_per_second = interval / max(now - log_time, 1e-9)
                    log_time, log_step, logged = now, step, metrics
                    for name, value in metrics.items():
                        summaries.scalar(name, value, step)
                    summaries.scalar("steps_per_sec", steps_per_second, step)
                    writer.flush()
                    if self.is_chief and not progress.enabled:  # else the progress line shows them
                        logging.info("step %d/%d: %s (means over the last %d steps)", step, config.max_steps,
                                     " ".join(f"{name} {value:.4g}" for name, value in metrics.items()), interval)
                progress.update(step, metrics, force=log_now)
                for hook in self.hooks:  # before saving: a checkpoint of step s holds the hooks' state of step s
                    hook(step, metrics if log_now else {})
                if step % config.checkpoint_every == 0:
                    self.save()
                    last_saved = step
        if step != last_saved:
            self.save()
        writer.close()
        return {"step": step, "metrics": logged}

    def _check_finite(self, metrics: Mapping[str, float], step: int) -> None:
        """A non-finite mean means some step since the last log diverged (a NaN stays in the sum); float16 loss
        scaling skips such steps on purpose, so it is tolerated there."""
        if not all(np.isfinite(list(metrics.values()))) and not isinstance(
                self.optimizer, keras.mixed_precision.LossScaleOptimizer):
            raise FloatingPointError(f"non-finite training metrics in the steps up to {step} in "
                                     f"{self.config.train_dir}: {metrics}")
