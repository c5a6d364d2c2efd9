"""Training KVM-MN with the set-wise loss (Eq. 7-8): the library behind `kvmmn-train` (`kvmmn.train`).

The recipe (Sec. "Training the Network") is `TrainConfig`'s default: SGD with momentum 0.9, learning rate 0.01
divided by 10 after 60% and again after 80% of the steps, weight decay 0.0002, batches of 20 combinations of a
probe and a gallery set of M = 15 images (`kvmmn.sampling`), 250K steps, TF-slim's ImageNet Inception V1 as the
backbone (`pretrained`), random rotation and random erasing on: the defaults are Table 1's "KVM-MN" model; both
off (`random_erasing=False, random_rotation=False`, kvmmn-train `--norandom_erasing --norandom_rotation`) give
its "KVM-MN-noAug" row and Table 3's rows without "RE" / "RR".

Choices of ours (also in WORKSPACE.md):
- Weight decay is TF-slim's: a loss term `weight_decay * sum(w**2) / 2` over every weight matrix and convolution
  kernel of the model (trainable variables of rank >= 2; not biases nor batch-norm parameters), so its gradient
  `weight_decay * w` goes through the momentum like the data gradient, as in slim's `train_image_classifier.py`
  with `l2_regularizer` (Keras SGD's own `weight_decay` is decoupled, applied outside the momentum).
- Keras SGD with momentum updates `v = 0.9 v - lr g; w += v`, TF-slim's MomentumOptimizer `a = 0.9 a + g;
  w -= lr a`: the same steps while the learning rate is constant; they differ only right after each decay.
- Distribution (`strategy`): the global batch of `batch_size` combinations is split evenly over the replicas
  (it must divide). With several replicas every batch norm is made cross-replica (`synchronized=True`,
  `cross_replica_batchnorm`), so that a step on R replicas equals a step on one device with the same global
  batch; per-replica batch norm (as TF-slim's multi-GPU clones had) is `cross_replica_batchnorm=False`. XLA
  compiles each replica's step on its own and cannot run the cross-replica reductions of synchronized batch norm:
  XLA with several replicas needs `cross_replica_batchnorm=False` (or the "frozen" backbone batch norm).
- A run is resumable: `train_dir` (a folder of kvmmn-train's own, `engine.run_dir.claim`: another tool's or a
  user's non-empty folder is refused before anything is written) holds `kvmmn_config.json` (this configuration)
  and tf.train checkpoints of the step, model, optimizer and the sampler's neighbour table; a restarted run checks
  that its configuration matches the one in `train_dir` (`ConfigMismatchError` lists the differences) and
  continues from the newest readable checkpoint with the same batches an uninterrupted run would have seen
  (`kvmmn.sampling`, stateless augmentation seeds): killed anywhere, it ends bit-identical to an uninterrupted run
  (`tests/test_faults.py`).
"""
from __future__ import annotations

import ast
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data import datasets
from data.pipeline import PRESETS, augment_and_normalize, decode, resize
from data.record import DatasetError, Record
from engine import checkpoints, distribute, precision, run_dir, seed as engine_seed, validation
from engine.train_loop import LoopConfig, Trainer, steps_dataset
from kvmmn.embedding import pooled_features
from kvmmn.losses import LOSSES, make_loss
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.pretrain import is_backbone_checkpoint, load_backbone, load_images
from kvmmn.retrieval import evaluate_record
from kvmmn.sampling import MINING, NUM_NEIGHBORS, SetwiseSampler

CONFIG_FILE = "kvmmn_config.json"
TOOL = "kvmmn-train"  # the owner named in its train_dir's marker (`engine.run_dir`)
CONFIG_VERSION = 1
NORMALIZATION = PRESETS["kvmmn"][1]


class ConfigMismatchError(ValueError):
    """`train_dir` belongs to a run of another configuration (or to no KVM-MN run at all)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a KVM-MN training run depends on; defaults are the paper's recipe (see the module docstring).

    dataset, data_root, split, dataset_options: what `data.datasets.load` reads (CUHK03 / CUHK01 train one model
      per split: pass the split).
    model: the `KVMMNConfig` (Table 3's model columns).
    loss: "setwise" (Eq. 7-8) or "pair" (Table 3 row D "Pair").
    gallery_size (M), mining ("hard" | "rand"), num_neighbors, num_samples, refresh_every: `kvmmn.sampling`.
    batch_size: combinations per step (global batch, over all replicas).
    learning_rate, decay_at (fractions of max_steps), decay_factor, momentum, weight_decay: the optimizer.
    random_erasing, random_rotation: Table 3 row E ("RE", "RR").
    pretrained: a TF-slim Inception V1 checkpoint (inception_v1.ckpt), or a backbone checkpoint of
      `kvmmn.pretrain.save_backbone` (any backbone); None trains the backbone from scratch.
    strategy, cross_replica_batchnorm, mixed_precision, xla: how the steps run (see the module docstring).
    train_dir, max_steps, checkpoint_every, log_every, keep_checkpoints, show_progress: the training loop.
    embed_batch_size: images per batch when the training set is embedded for mining.
    cache_images: hold the resized training images in memory (N x h x w x 3 float32: for small training sets such
      as the synthetic one) instead of decoding each batch's files at every step; the batches are the same.
    eval_every: > 0 holds out a few training identities (`engine.validation`, drawn with `seed`; not trained on)
      and ranks them with the model every this many steps (`validate`: val/mAP, val/rank1 ...); 0 trains on all.
    """

    train_dir: str
    dataset: str = "synthetic"
    data_root: str = ""
    split: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    model: KVMMNConfig = dataclasses.field(default_factory=KVMMNConfig)
    loss: str = "setwise"
    gallery_size: int = 15
    batch_size: int = 20
    mining: str = "hard"
    num_neighbors: int = NUM_NEIGHBORS
    num_samples: int = 500_000
    refresh_every: int = 0
    max_steps: int = 250_000
    learning_rate: float = 0.01
    decay_at: tuple[float, ...] = (0.6, 0.8)
    decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    random_erasing: bool = True
    random_rotation: bool = True
    pretrained: str | None = None
    seed: int = 0
    strategy: str = "one_device"
    cross_replica_batchnorm: bool = True
    mixed_precision: str = "float32"
    xla: bool = False
    checkpoint_every: int = 5000
    log_every: int = 100
    keep_checkpoints: int = 3
    show_progress: bool = True
    embed_batch_size: int = 64
    cache_images: bool = False
    eval_every: int = 0

    # Fields that may change between a run and its resumption: where things are and how they are executed.
    RESUMABLE_CHANGES = ("train_dir", "data_root", "pretrained", "strategy", "cross_replica_batchnorm", "xla",
                         "checkpoint_every", "log_every", "keep_checkpoints", "show_progress", "embed_batch_size",
                         "cache_images")

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", KVMMNConfig.from_dict(self.model))
        object.__setattr__(self, "decay_at", tuple(float(f) for f in self.decay_at))
        object.__setattr__(self, "dataset_options", dict(self.dataset_options))
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.mining not in MINING:
            raise ValueError(f"mining={self.mining!r}: choose one of {', '.join(MINING)}")
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: choose one of {', '.join(distribute.STRATEGIES)}")
        if self.mixed_precision not in precision.POLICIES:
            raise ValueError(f"mixed_precision={self.mixed_precision!r}: choose one of {', '.join(precision.POLICIES)}")
        if not all(0.0 < f < 1.0 for f in self.decay_at) or list(self.decay_at) != sorted(self.decay_at):
            raise ValueError(f"decay_at={self.decay_at} must be increasing fractions of max_steps in (0, 1)")
        for name in ("learning_rate", "decay_factor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0 and momentum={self.momentum} in [0, 1)")
        if self.pretrained and self.model.backbone != "inception_v1" and not is_backbone_checkpoint(self.pretrained):
            raise ValueError(f"pretrained={self.pretrained!r} is not a kvmmn.pretrain backbone checkpoint, and a "
                             f"TF-slim Inception V1 checkpoint needs the inception_v1 backbone, but the model's "
                             f"backbone is {self.model.backbone!r}")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["model"] = self.model.to_dict()
        values["decay_at"] = list(self.decay_at)
        return values

    def load_record(self) -> Record:
        """The dataset split this run trains on (its `train` list; the test lists are for `kvmmn.retrieval`)."""
        return datasets.load(self.dataset, self.data_root, split=self.split, **self.dataset_options)


def parse_dataset_options(values) -> dict:
    """NAME=VALUE strings (`--dataset_option`) -> {name: value}: Python literals (486, 0.5, True) as such, true /
    false as booleans, anything else as a string."""
    options = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--dataset_option={item!r} must be NAME=VALUE")
        try:
            options[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[name] = {"true": True, "false": False}.get(raw.lower(), raw)
    return options


# ---------------------------------------------------------------------------------------------- run directory
def config_path(train_dir: str) -> str:
    return os.path.join(train_dir, CONFIG_FILE)


def read_run_config(path: str) -> TrainConfig:
    """The `TrainConfig` of the run whose checkpoints are at `path` (its train_dir or a checkpoint prefix in it)."""
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    file = config_path(directory)
    if not os.path.isfile(file):
        raise ConfigMismatchError(f"{file} not found: {path!r} is not the train_dir (or a checkpoint in the "
                                  f"train_dir) of a kvmmn-train run")
    return _config_from(run_dir.read_json(file, ConfigMismatchError), file)


def _config_from(content: dict, file: str) -> TrainConfig:
    if content.get("version") != CONFIG_VERSION or "config" not in content:
        raise ConfigMismatchError(f"{file}: expected {{'version': {CONFIG_VERSION}, 'config': ...}}")
    try:
        return TrainConfig(**content["config"])
    except TypeError as err:  # a field this version does not know
        raise ConfigMismatchError(f"{file}: {err}") from None


def check_or_write_run_config(config: TrainConfig) -> None:
    """Write `config` into a new train_dir, or check that an existing run there has the same configuration (the
    fields of `TrainConfig.RESUMABLE_CHANGES` may differ and take this run's values; anything may while the run
    has no checkpoint yet)."""
    run_dir.prepare(config.train_dir, TOOL, CONFIG_FILE)
    has_checkpoint = bool(run_dir.checkpoint_steps(config.train_dir))
    file = config_path(config.train_dir)
    if has_checkpoint and not os.path.isfile(file):
        raise ConfigMismatchError(f"{config.train_dir} holds checkpoints but no {CONFIG_FILE}: it is not a "
                                  f"kvmmn-train run; use another --train_dir")
    current = config.to_dict()

    def differences(stored: dict) -> list[str]:
        previous = _config_from(stored, file).to_dict()
        return [f"{name}: {previous.get(name)!r} in {CONFIG_FILE}, {current[name]!r} now" for name in current
                if has_checkpoint and name not in TrainConfig.RESUMABLE_CHANGES and previous.get(name) != current[name]]

    run_dir.write_or_check_config(config.train_dir, CONFIG_FILE, {"version": CONFIG_VERSION, "config": current},
                                  differences, ConfigMismatchError, rewrite=True)


# ---------------------------------------------------------------------------------------------- model and loss
def decayed_weights(model: keras.Model) -> list:
    """The variables weight decay applies to: trainable weight matrices and kernels (rank >= 2)."""
    return [v for v in model.trainable_variables if len(v.shape) >= 2]


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum and the stepwise decay at `decay_at` fractions of `max_steps`."""
    boundaries = [int(round(f * config.max_steps)) for f in config.decay_at]
    values = [config.learning_rate * config.decay_factor ** i for i in range(len(boundaries) + 1)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return precision.wrap_optimizer(keras.optimizers.SGD(schedule, momentum=config.momentum))


def make_loss_fn(config: TrainConfig, model: keras.Model):
    """The Trainer's `loss_fn`: per-combination loss, slim weight decay and the set accuracy."""
    loss = make_loss(config.loss)
    weights = decayed_weights(model)
    decay = config.weight_decay

    def loss_fn(model, batch):
        (probes, galleries), labels = batch
        scores = tf.cast(model((probes, galleries), training=True), tf.float32)
        outputs = {"per_example_loss": loss.call(labels, scores),
                   "set_accuracy": tf.reduce_mean(tf.cast(
                       tf.equal(tf.argmax(scores, axis=-1, output_type=tf.int32), labels), tf.float32))}
        if decay:
            outputs["regularization_loss"] = decay * tf.add_n(
                [tf.nn.l2_loss(tf.cast(w, tf.float32)) for w in weights])
        return outputs

    return loss_fn


# ---------------------------------------------------------------------------------------------- data
def training_dataset(sampler: SetwiseSampler, paths, image_size, start_step: int, stop_step: int, *, seed: int,
                     random_erasing: bool = False, random_rotation: bool = False,
                     cached_images: tf.Tensor | None = None) -> tf.data.Dataset:
    """Global batches ((probes [B, h, w, 3], gallery sets [B, M, h, w, 3]), positive positions [B]) of the steps
    [start_step, stop_step), drawn by `sampler` and loaded from `paths` (the training images' files), or taken
    from `cached_images` (the same images already resized, `kvmmn.pretrain.load_images(...)`; the same batches).

    The images of step s are augmented with the stateless seed (seed, s), so that the images, like the
    combinations, are a function of the step only.
    """
    batch, size = sampler.batch_size, sampler.gallery_size
    height, width = image_size
    paths = tf.constant(list(paths))
    augmentation = dict(random_erasing=random_erasing, random_rotation=random_rotation)

    def indices(step):
        probes, galleries, labels = sampler.batch(step)
        return np.int64(step), probes, galleries, labels

    signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([batch], tf.int32),
                 tf.TensorSpec([batch, size], tf.int32), tf.TensorSpec([batch], tf.int32))

    def load(step, probes, galleries, labels):
        index = tf.concat([probes, tf.reshape(galleries, [-1])], axis=0)
        if cached_images is not None:
            images = tf.gather(cached_images, index)
        else:
            images = tf.map_fn(lambda i: resize(decode(tf.gather(paths, i)), image_size), index,
                               fn_output_signature=tf.TensorSpec([height, width, 3]), parallel_iterations=16)
        images = augment_and_normalize(images, NORMALIZATION, tf.stack([tf.constant(seed, tf.int64), step]),
                                       **augmentation)
        return (images[:batch], tf.reshape(images[batch:], [batch, size, height, width, 3])), labels

    dataset = steps_dataset(indices, start_step, stop_step, signature)
    return dataset.map(load, num_parallel_calls=2, deterministic=True).prefetch(1)


# ---------------------------------------------------------------------------------------------- training
def check_replicas(config: TrainConfig, replicas: int) -> None:
    """Raise ValueError when `config` cannot run on `replicas` replicas (uneven batch, XLA with synchronized BN)."""
    if config.batch_size % replicas:
        raise ValueError(f"batch_size={config.batch_size} combinations do not split evenly over {replicas} "
                         f"replicas: choose a multiple of {replicas}")
    if config.xla and replicas > 1 and config.cross_replica_batchnorm:
        raise ValueError("xla=True cannot compile the cross-replica reductions of synchronized batch norm: with "
                         f"{replicas} replicas set cross_replica_batchnorm=False (per-replica batch norm) or xla=False")


def build_model(config: TrainConfig, replicas: int = 1) -> KVMMN:
    """The KVM-MN model of `config` (call under the strategy's scope), with the pretrained backbone if any."""
    model = KVMMN(config.model)
    if replicas > 1 and config.cross_replica_batchnorm:
        logging.info("cross-replica batch norm in %d layers", distribute.use_cross_replica_batchnorm(model))
    if config.pretrained and is_backbone_checkpoint(config.pretrained):
        load_backbone(model.backbone, config.pretrained)
        logging.info("backbone restored from the pre-trained backbone checkpoint %s", config.pretrained)
    elif config.pretrained:
        from kvmmn.slim_checkpoint import load_slim_checkpoint

        logging.info("%s", load_slim_checkpoint(model.backbone, config.pretrained))
    elif config.model.backbone == "inception_v1":
        logging.warning("no --pretrained checkpoint: training Inception V1 from scratch (the paper starts from "
                        "TF-slim's ImageNet inception_v1.ckpt)")
    if config.mining == "hard" and not config.pretrained:
        logging.warning("--mining=hard from an untrained backbone: its L2 neighbours are mostly images of the "
                        "probe's camera and background, and the matching network can learn to pick the gallery image "
                        "least like the probe instead of its identity; --mining=rand is the safer choice from scratch")
    return model


def validate(model: KVMMN, query, gallery, batch_size: int) -> dict[str, float]:
    """KVM-MN's ranking (`kvmmn.retrieval`, exhaustive scoring) of held-out training identities' query and gallery
    samples under the Market-1501 protocol: mAP, rank-1, mINP, and "pooled_l2_" ones of the backbone's L2 ranking."""
    record = Record("validation", (), query, gallery, protocol="market1501", split="held-out training identities")
    result = evaluate_record(model, record, shortlist=None, batch_size=batch_size, max_rank=1)
    return {**validation.retrieval_scalars(result["kvmmn"]),
            **validation.retrieval_scalars(result["pooled_l2"], "pooled_l2_")}


def train(config: TrainConfig, hooks=()) -> dict:
    """Train (or resume) the run `config` describes until `config.max_steps`.

    `hooks` are extra `hook(step, metrics)` callables run after every step (see `engine.train_loop.Trainer`).
    Returns {"step", "metrics" (last logged, floats), "train_dir", "probes", "skipped_images",
    "skipped_identities"}.
    Raises DatasetError for an unknown dataset or an empty training split, SamplerError when the split cannot give
    set-wise samples, ConfigMismatchError / RestoreError for a train_dir of another configuration.
    """
    strategy = distribute.make_strategy(config.strategy)
    run_dir.claim(config.train_dir, TOOL, CONFIG_FILE)  # before any work: refuse another tool's folder at once
    engine_seed.set_seed(config.seed)
    precision.set_policy(config.mixed_precision)
    replicas = strategy.num_replicas_in_sync
    check_replicas(config, replicas)

    splits = datasets.eval_splits(config.dataset, **config.dataset_options)
    if config.split is None and len(splits) > 1:
        raise DatasetError(f"dataset {config.dataset!r} trains one model per split ({len(splits)} splits: "
                           f"{', '.join(map(str, splits[:3]))}, ...): pass --split")
    record = config.load_record()
    if not record.train:
        raise DatasetError(f"dataset {config.dataset!r} at {config.data_root!r} (split {record.split or 'default'})"
                           " has no training images")
    if config.eval_every:
        train_samples, held_out = validation.split_samples(record.train, config.seed)
        record = dataclasses.replace(record, train=train_samples)
        validation_query, validation_gallery = validation.split_query_gallery(held_out)
        hooks = [validation.EvalHook(lambda: validate(model, validation_query, validation_gallery,
                                                      config.embed_batch_size), config.eval_every), *hooks]
    logging.info("%s", record.summary())
    pids, camids = zip(*[(s.pid, s.camid) for s in record.train])
    sampler = SetwiseSampler(pids, camids, gallery_size=config.gallery_size, batch_size=config.batch_size,
                             mining=config.mining, num_neighbors=config.num_neighbors,
                             num_samples=config.num_samples, refresh_every=config.refresh_every, seed=config.seed)
    check_or_write_run_config(config)

    with strategy.scope():
        model = build_model(config, replicas)
        optimizer = make_optimizer(config)
    loop = LoopConfig(config.train_dir, config.max_steps, checkpoint_every=config.checkpoint_every,
                      log_every=config.log_every, keep_checkpoints=config.keep_checkpoints, xla=config.xla,
                      show_progress=config.show_progress)

    def mine(version: int, progress: bool) -> None:
        sampler.mine(pooled_features(model, record.train, config.embed_batch_size, progress), version)

    def refresh(step, metrics):
        if sampler.is_refresh_step(step) and step < config.max_steps:
            mine(sampler.table_version(step), progress=False)

    cached_images = load_images(record.train, config.model.image_size) if config.cache_images else None

    def make_data(start_step):
        if sampler.needs_neighbors and sampler.version != sampler.table_version(start_step):
            mine(sampler.table_version(start_step), progress=config.show_progress)
        return training_dataset(sampler, [s.path for s in record.train], config.model.image_size, start_step,
                                config.max_steps, seed=config.seed, random_erasing=config.random_erasing,
                                random_rotation=config.random_rotation, cached_images=cached_images)

    trainer = Trainer(strategy, model, optimizer, loop, loss_fn=make_loss_fn(config, model),
                      trackables={"sampler": sampler.state}, hooks=[refresh, *hooks])
    try:
        result = trainer.fit(make_data)
    finally:
        sampler.close()
    return {**result, "train_dir": config.train_dir, "probes": len(sampler.probes),
            "skipped_images": sampler.skipped_images, "skipped_identities": sampler.skipped_identities}


def load_trained_model(path: str) -> tuple[KVMMN, TrainConfig, str, int]:
    """The model of a kvmmn-train run: `path` is its train_dir (latest checkpoint) or a checkpoint prefix.

    Returns (model, run config, checkpoint path, step). Raises ConfigMismatchError without `kvmmn_config.json`,
    FileNotFoundError without a checkpoint, CorruptCheckpointError for an unreadable one (a train_dir falls back
    to its newest readable checkpoint with a warning), ValueError when the checkpoint does not hold this model's
    variables.
    """
    config = read_run_config(path)
    _, checkpoint = run_dir.resolve(path)
    model = KVMMN(config.model)
    step = tf.Variable(0, dtype=tf.int64)
    try:
        checkpoints.restore(tf.train.Checkpoint(model=model, step=step), checkpoint)
    except (ValueError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(f"checkpoint {checkpoint} does not hold the model of {config_path(os.path.dirname(checkpoint))}"
                         f": {err}") from err
    return model, config, checkpoint, int(step.numpy())
