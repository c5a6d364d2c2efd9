"""What the training binaries of both models share: strategy, the resumable training loop, flags, seeds.

Modules and their API
---------------------
`engine.distribute`
  `make_strategy(name) -> tf.distribute.Strategy` for name in `STRATEGIES = ("one_device", "mirrored",
  "multi_worker")`: one_device = first GPU else CPU; mirrored = every visible GPU, or every logical CPU device
  when there is no GPU (tests split the CPU in two); multi_worker = MultiWorkerMirroredStrategy through
  `TF_CONFIG` (`StrategyError` naming the field when it is missing or malformed; `parse_tf_config(raw=None)`).
  `is_chief(strategy)`, `worker_id(strategy)`. Cross-replica batch norm is
  `keras.layers.BatchNormalization(synchronized=True)`, or `use_cross_replica_batchnorm(model)` for a built model;
  plain BN normalises each replica's share. `global_batch(*tensors)` inside `strategy.run`: the tensors
  concatenated over the replicas (differentiable all-gather), for losses that compare examples across the batch.
`engine.cli`
  What every binary (`<package>/cli/<name>.py`) is made of; libraries declare no flag. `new_flags()` (the binary's
  own absl FlagValues, with --debug and --verbose_tf); `define_config_flags(fv, Dataclass, help=, checks=, names=,
  defaults=)` (one flag per field: the dataclass is the single source of name, type and default; `.build()`);
  `define(fv, name, type, default, help, Check)`; `Check(min, max, ...)` ranges (floats always finite);
  `parse_assignments(items, types_or_dataclass, flag)` (the one typed NAME=VALUE parser: --override, --param,
  --dataset_option); `deprecated_alias(fv, old, new)`; flag sets `define_loop_flags(fv, **defaults)` (--strategy,
  --mixed_precision, --seed and LoopConfig's fields), `setup_from_flags(fv) -> strategy`,
  `loop_config_from_flags(fv)`, `define_dataset_flags(fv)` (--dataset checked against the registry, --data_root,
  --split, --dataset_option typed by the reader), `load_dataset(fv)`; `run(main, fv, __doc__)` (the console-script
  entry: --help lists the binary's own flags, user errors are one line `error: ...` with exit status 2, --debug
  shows the traceback); `quiet_tensorflow()` (called by each `<package>/cli/__init__.py`).
`engine.train_loop`
  `LoopConfig(train_dir, max_steps, checkpoint_every=1000, log_every=100, keep_checkpoints=3, xla=False,
  show_progress=True)`.
  `Trainer(strategy, model, optimizer, config, *, loss_fn=None, step_fn=None, trackables=None, hooks=())`:
    - create model (built) and optimizer under `strategy.scope()`;
    - `loss_fn(model, per_replica_batch) -> {"per_example_loss": [B], "regularization_loss": optional scalar,
      **scalar metrics}`: the Trainer scales by the global batch (`tf.nn.compute_average_loss`), adds
      `model.losses`, handles float16 loss scaling, sums gradients over replicas and applies them;
    - or `step_fn(per_replica_batch) -> {name: scalar}` doing its own update (values averaged over replicas);
    - `trackables={"sampler": engine.state.ArrayState(...), ...}` saved in the same checkpoint;
    - `hooks=[fn(step, metrics)]` after each step (metrics: the logged means at a logging step, else {}).
  `Trainer.fit(make_data) -> {"step", "metrics"}`: restores the newest readable checkpoint of train_dir
  (`engine.run_dir.latest_checkpoint`; RestoreError if it belongs to another configuration); calls `make_data(start_step) -> tf.data.Dataset` of GLOBAL batches for
  the remaining steps, or some of them (e.g. the rest of an epoch: when it ends, make_data is called again with
  the next step; an empty dataset stops with a warning); trains to max_steps in a tf.function (the per-replica
  gradient computation jit-compiled with `xla`); after each step runs the hooks, then saves
  `train_dir/ckpt-<step>` (`engine.run_dir.save_checkpoint`: atomic; the step, model, optimizer, the model's
  dropout seed states `engine.checkpoints.random_states(model)` and the trackables) every checkpoint_every steps
  and at the end; writes TensorBoard scalars (loss, lr,
  steps_per_sec, the metrics) to `train_dir/train` every log_every steps; shows a progress bar (step, loss, lr,
  steps/s, ETA), or without one logs the same line through absl. Logged loss and metrics are means over the steps
  since the previous log (`RunningSums`, summed by eager ops after each step), not the logging step's batch. `Trainer.restore() -> step`, `Trainer.save()`, `Trainer.checkpoint`, `Trainer.step`.
  `steps_dataset(batch_fn, start_step, stop_step, output_signature)`: batches `batch_fn(step)` computed in Python.
  Deterministic resume: make_data must give the batches of an uninterrupted run from start_step on, e.g. from a
  sampler that is a pure function of (seed, step); accumulated sampler state goes into `trackables`. A run killed
  anywhere then ends bit-identical to an uninterrupted one on CPU (tests/test_faults.py).
`engine.run_dir`
  The training directory and every folder the project owns. `claim(directory, tool, signature=None)` marks a
  folder with `.reid-owned` (the tool's name) or checks the mark; a file, a user's non-empty folder or another
  tool's folder is an `OwnershipError` naming it, raised before any work. `remove_owned(directory, tool)` deletes
  only a folder with that tool's mark. `check_output_file(path, flag)`. `prepare(train_dir, tool, signature)` =
  claim + remove dead temporaries. `write_or_check_config(directory, name, content, differences, error,
  rewrite=False)`: atomic JSON, or the differences from the stored one as one error. `save_checkpoint(checkpoint,
  directory, step, keep)`, `checkpoint_steps(directory)`, `latest_checkpoint(directory)` (the newest checkpoint
  whose every tensor reads back; newer unreadable ones skipped with a warning naming the file),
  `check_readable(prefix)` (`CorruptCheckpointError`, one line naming the file), `resolve(path, flag)` (a
  train_dir or a checkpoint prefix -> (directory, prefix)).
`engine.atomic`
  `atomic_path(path)` (context manager yielding the temporary `<path>.tmp-<pid><ext>`, renamed into place),
  `write_text`, `write_bytes`, `write_checkpoint(checkpoint, prefix)` (index renamed last),
  `remove_dead_temporaries(path)` (run by every atomic write: temporaries of `path` whose pid is not running).
`engine.faults`
  `point(name, step)`: with `REID_FAULT=<point>:<step>[,...]` in the environment, SIGKILL this process there
  (points: step, checkpoint_data, checkpoint_files, checkpoint_state, results_row); the fault-injection tests' hook.
`engine.validation`
  `--eval_every` (opt-in): `hold_out(pids, seed)` -> mask of a seeded 10% (2..100) of the training identities;
  `split_samples(train, seed)` -> (train relabelled, held-out samples); `query_mask(pids, camids)` /
  `split_query_gallery(samples)`: each held-out identity's first camera is query, its other cameras gallery;
  `EvalHook(evaluate, every)`: a Trainer hook writing `val/<name>` scalars and a printed line every N steps;
  `retrieval_scalars(result)`; `EVAL_EVERY_HELP` (the flag's help, declared by each training binary).
`engine.summaries`
  `scalar(name, value, step)`: a TensorBoard scalar without the tensorboard package (TF 2.21 no longer installs
  it; `tf.summary.scalar` then fails); `read_scalars(event_dir) -> {name: [(step, value)]}`.
`engine.checkpoints`
  `restore(checkpoint, prefix) -> int`: strict `tf.train.Checkpoint` restore used by `Trainer.restore` and every
  model loader. Before changing anything it checks that every weight of the checkpoint's Keras models, every
  variable of its optimizers, its variables and its other objects (`to_restore(checkpoint)`) are reachable
  from the root and have a value of their shape in the checkpoint; else `IncompleteCheckpointError`
  (a ValueError) names each (Keras path and checkpoint path) and the checkpoint.
`engine.state`
  `ArrayState(**arrays)`: a dict of NumPy arrays checkpointed with the model (`tf.train.experimental.PythonState`).
`engine.schedules`
  `LinearWarmup(after, warmup_steps, warmup_factor=0.1)`: Keras LearningRateSchedule, linear warm-up in front of a
  float or another schedule (strong-baseline and ACP warm-up).
`engine.precision`
  `set_policy(name)`, `wrap_optimizer(optimizer)` (LossScaleOptimizer under mixed_float16), `POLICIES`.
`engine.seed`
  `set_seed(seed, deterministic_ops=False)`: Python, NumPy, TensorFlow and Keras generators.
`engine.progress`
  `ProgressBar(target, initial=0)` with `update(step, values, force=False)`, `due()` (training loops);
  `Progress(total, unit, enabled)` with `add(n)` / `update(done)` (counted work); both write plain lines without
  carriage returns or ANSI codes when the stream is not a terminal; `format_duration(seconds)`.

Typical binary
--------------
    FLAGS = cli.new_flags()
    cli.define_loop_flags(FLAGS, max_steps=10_000)

    def main(argv):
        strategy = cli.setup_from_flags(FLAGS)
        with strategy.scope():
            model = build_model(); model(tf.zeros(...))          # or a functional model
            optimizer = precision.wrap_optimizer(keras.optimizers.Adam(LinearWarmup(3.5e-4, 500)))
        trainer = Trainer(strategy, model, optimizer, cli.loop_config_from_flags(FLAGS), loss_fn=my_loss)
        trainer.fit(lambda start: my_dataset(start, FLAGS["max_steps"].value))

    def run():
        cli.run(main, FLAGS, __doc__)
"""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
