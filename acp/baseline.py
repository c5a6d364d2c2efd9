"""The ResNet-50 re-ID baseline whose features ACP re-ranks: the strong baseline (BoT) of Luo et al. 2019, which
ACP uses through FastReID (ACP Sec. IV-B1), with the multi-block outputs of ACP Sec. III-B1.

Model (`build_baseline`):
  images (pipeline's ImageNet mean/std normalisation) -> `ImageNetToCaffe` -> ResNet-50 (`resnet_v1`, last stride
  1) -> C3, C4, C5 -> global average pooling -> f3 [512], f4 [1024], f5 [2048]
  f5 -> BNNeck (BatchNormalization without shift, BoT's frozen-bias BN) -> embedding
  embedding -> classifier (Dense without bias) -> logits
Losses (BoT): label-smoothed cross-entropy (epsilon 0.1) on the logits, batch-hard triplet loss (margin 0.3) on f5
(the feature BEFORE the BNNeck), summed. Test-time feature: `embedding`, the feature AFTER the BNNeck, as BoT
evaluates.

Choices of ours (WORKSPACE.md lists them):
- The backbone is our own Keras build of ResNet-50 v1 with the layer names and layout of
  `keras.applications.ResNet50` (stride on the first 1x1 convolution of a stage, biases on every convolution), so
  its ImageNet weight files load by layer name; `last_stride` changes the stride of conv5_block1, which
  keras.applications does not expose. Those weights were converted from Caffe and expect BGR pixels in [0, 255]
  minus the Caffe mean, while our pipeline gives RGB ImageNet mean/std (torchvision's convention, as FastReID);
  `ImageNetToCaffe` converts in the graph.
- The P x K sampler is a pure function of (seed, step): an epoch visits every identity once (P per step, in a
  seeded permutation), and each visit draws K of the identity's images (without replacement when it has K,
  with replacement otherwise). BoT's RandomIdentitySampler instead splits each identity's images into groups of
  K; ours needs no sampler state to resume, and with augmentation seeded by (seed, step) a resumed run trains on
  exactly the batches of an uninterrupted one.
- Augmentation is horizontal flip and random erasing (p 0.5, data.augment); BoT's 10-pixel padding with random
  crop is not applied.
- Batch norm momentum 0.9 in Keras' convention (PyTorch's 0.1, what BoT / FastReID train with) instead of Keras'
  0.99: after a short training the moving statistics would otherwise still be far from the batch statistics
  (measured on the demo's synthetic run: mAP 10% with 0.99, 28% with 0.9).
- BoT's weight decay 5e-4 is PyTorch Adam's L2 term (added to the gradient), applied here as the loss
  0.5 * 5e-4 * sum ||w||^2 over all trainable weights, not as Keras' decoupled `weight_decay`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data.evaluation import evaluate_features
from data.pipeline import IMAGENET_MEAN, IMAGENET_STD, augment_and_normalize, decode, make_dataset, resize
from engine import atomic, checkpoints, precision, validation
from engine.schedules import LinearWarmup
from engine.train_loop import Trainer, steps_dataset

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BLOCK_OUTPUTS = ("f3", "f4", "f5")
_BN_EPSILON = 1.001e-5  # keras.applications' ResNet value, so that its ImageNet statistics apply unchanged
# PyTorch's momentum 0.1 in Keras' convention, as BoT / FastReID train (Keras' default 0.99 averages over ~100
# steps, so a short run would evaluate with moving statistics still a third of the way from their initial values).
_BN_MOMENTUM = 0.9
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="acp")
class ImageNetToCaffe(keras.layers.Layer):
    """Maps RGB images normalised with ImageNet mean/std (data.pipeline's "imagenet") to the Caffe convention of
    keras.applications' ResNet weights: BGR, [0, 255], minus the per-channel Caffe mean."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, caffe_mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std, self.caffe_mean = tuple(mean), tuple(std), tuple(caffe_mean)

    def call(self, images):
        pixels = (images * keras.ops.array(self.std, images.dtype) + keras.ops.array(self.mean, images.dtype)) * 255.0
        return keras.ops.flip(pixels, axis=-1) - keras.ops.array(self.caffe_mean, images.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "caffe_mean": self.caffe_mean}


def _bottleneck(x, filters: int, stride: int, shortcut_conv: bool, name: str):
    """ResNet v1 bottleneck (He et al. 2016, Fig. 5 right) with keras.applications' layer names."""
    bn = dict(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON)
    if shortcut_conv:
        shortcut = keras.layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(**bn, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(**bn, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(**bn, name=f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = keras.layers.BatchNormalization(**bn, name=f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def resnet_v1(input_shape=(256, 128, 3), blocks: Sequence[int] = RESNET_BLOCKS[50], last_stride: int = 1,
              name: str = "resnet50") -> keras.Model:
    """ResNet v1 (bottleneck) returning [C3, C4, C5] (ACP Sec. III-B1's block naming; channels 512, 1024, 2048).

    `blocks` gives the bottlenecks per stage (RESNET_BLOCKS: 50, 101, 152; tests use (1, 1, 1, 1)); `last_stride`
    is the stride of stage conv5 (2 in ImageNet ResNet, 1 in the re-ID strong baseline: C5 keeps C4's 16x8 map
    for a 256x128 input).
    """
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"blocks must give 4 positive stage depths, got {blocks}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    images = keras.Input(input_shape, name="images")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(images)
    x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    outputs = []
    for stage, (filters, depth, stride) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 2, last_stride)), 2):
        for block in range(1, depth + 1):
            x = _bottleneck(x, filters, stride if block == 1 else 1, block == 1, f"conv{stage}_block{block}")
        if stage >= 3:
            outputs.append(x)
    return keras.Model(images, outputs, name=name)


# ----------------------------------------------------------------------------------------------- pretrained weights
def read_layer_weights(path: str) -> dict[str, list[np.ndarray]]:
    """Weights per layer name from a Keras weight file: the legacy `.h5` of keras.applications (e.g.
    resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) or a Keras 3 `.weights.h5`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pretrained={path}: file not found")
    found: dict[str, list[np.ndarray]] = {}

    def text(value):
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    with h5py.File(path, "r") as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" in root.attrs:  # legacy Keras 2 format: one group per layer, weights listed in order
            for layer in map(text, root.attrs["layer_names"]):
                names = [text(n) for n in root[layer].attrs.get("weight_names", [])]
                if names:
                    found[layer] = [np.asarray(root[layer][n]) for n in names]
        else:  # Keras 3 format: <path>/vars/<index>, the layer's name in the `vars` group's attributes

            def visit(name, item):
                if isinstance(item, h5py.Group) and name.endswith("vars") and len(item) and "name" in item.attrs:
                    found[text(item.attrs["name"])] = [np.asarray(item[str(i)]) for i in range(len(item))]

            handle.visititems(visit)
    if not found:
        raise ValueError(f"--pretrained={path}: no layer weights found (not a Keras .h5 / .weights.h5 file?)")
    return found


def load_pretrained(model: keras.Model, path: str) -> int:
    """Assign the weights of `path` to the layers of `model` with the same names; returns how many layers.

    Every layer of `model` that has weights must be in the file with the same shapes (a ValueError names the file
    and layer otherwise); layers only in the file (an ImageNet classifier) are ignored.
    """
    stored = read_layer_weights(path)
    assigned = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            assigned += load_pretrained(layer, path)
            continue
        if not layer.weights:
            continue
        if layer.name not in stored:
            raise ValueError(f"--pretrained={path}: has no weights for layer {layer.name!r}")
        values = stored[layer.name]
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != shapes:
            raise ValueError(f"--pretrained={path}: layer {layer.name!r} holds shapes {[v.shape for v in values]}, "
                             f"the model needs {shapes}")
        layer.set_weights(values)
        assigned += 1
    return assigned


# ----------------------------------------------------------------------------------------------- the model
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What determines the baseline's variables and outputs (saved beside checkpoints as `MODEL_CONFIG_FILE`)."""

    num_classes: int
    image_size: tuple[int, int] = (256, 128)
    depth: int = 50
    blocks: tuple[int, ...] | None = None  # overrides `depth` (small test networks)
    last_stride: int = 1
    caffe_input: bool = True

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        elif self.depth not in RESNET_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {self.depth}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        return self.blocks or RESNET_BLOCKS[self.depth]


MODEL_CONFIG_FILE = "baseline_config.json"


def save_model_config(config: ModelConfig, directory: str) -> str:
    """Write `config` to `directory/MODEL_CONFIG_FILE`; a different config already there is an error."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MODEL_CONFIG_FILE)
    if os.path.exists(path):
        existing = load_model_config(directory)
        if existing != config:
            raise ValueError(f"{path} holds another model configuration ({existing}); use another --train_dir "
                             f"for {config}")
        return path
    atomic.write_text(path, json.dumps(dataclasses.asdict(config), indent=1))
    return path


def load_model_config(directory: str) -> ModelConfig:
    path = os.path.join(directory, MODEL_CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {directory} the --train_dir of acp-baseline-train?")
    with open(path) as handle:
        fields = json.load(handle)
    try:
        return ModelConfig(**fields)
    except TypeError as err:
        raise ValueError(f"{path}: not a baseline model configuration ({err})") from None


def build_baseline(config: ModelConfig, pretrained: str | None = None) -> keras.Model:
    """The strong baseline with multi-block outputs: a dict model {"logits", "embedding", "f3", "f4", "f5"}.

    `pretrained`: a Keras weight file of an ImageNet ResNet (see `read_layer_weights`) loaded into the backbone;
    without it the backbone starts from random weights.
    """
    height, width = config.image_size
    backbone = resnet_v1((height, width, 3), config.stage_blocks, config.last_stride,
                         name=f"resnet{config.depth}" if config.blocks is None else "resnet")
    if pretrained:
        count = load_pretrained(backbone, pretrained)
        logging.info("loaded ImageNet weights of %d layers from %s", count, pretrained)
    images = keras.Input((height, width, 3), name="images")
    x = ImageNetToCaffe(name="caffe_input")(images) if config.caffe_input else images
    blocks = backbone(x)
    pooled = {name: keras.layers.GlobalAveragePooling2D(dtype="float32", name=name)(block)
              for name, block in zip(BLOCK_OUTPUTS, blocks)}
    embedding = keras.layers.BatchNormalization(center=False, momentum=_BN_MOMENTUM, dtype="float32",
                                                    name="bnneck")(pooled["f5"])
    logits = keras.layers.Dense(config.num_classes, use_bias=False, dtype="float32",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                                name="classifier")(embedding)
    return keras.Model(images, {"logits": logits, "embedding": embedding, **pooled}, name="reid_baseline")


def feature_extractor(model: keras.Model) -> keras.Model:
    """The baseline without its classifier: images -> {"embedding", "f3", "f4", "f5"} (shares the weights)."""
    outputs = {name: model.get_layer(name).output for name in BLOCK_OUTPUTS}
    return keras.Model(model.input, {"embedding": model.get_layer("bnneck").output, **outputs},
                       name="reid_features")


# ----------------------------------------------------------------------------------------------- losses
def label_smoothing_cross_entropy(labels, logits, epsilon: float = 0.1):
    """Per-example cross-entropy against q = (1 - epsilon) one_hot + epsilon / N (BoT's label smoothing)."""
    logits = tf.cast(logits, tf.float32)
    targets = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1]) * (1.0 - epsilon)
    targets += epsilon / tf.cast(tf.shape(logits)[-1], tf.float32)
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def batch_hard_triplet_loss(features, labels, margin: float = 0.3):
    """Per-anchor batch-hard triplet loss (Hermans et al. 2017): relu(max d(a, p) - min d(a, n) + margin) with
    Euclidean distances over the batch. An anchor without a positive uses d(a, p) = 0; one without a negative
    contributes 0."""
    features = tf.cast(features, tf.float32)
    squared = tf.reduce_sum(tf.square(features), axis=1)
    distances = squared[:, None] - 2.0 * tf.matmul(features, features, transpose_b=True) + squared[None, :]
    distances = tf.sqrt(tf.maximum(distances, 1e-12))
    same = tf.equal(labels[:, None], labels[None, :])
    hardest_positive = tf.reduce_max(tf.where(same, distances, 0.0), axis=1)
    hardest_negative = tf.reduce_min(tf.where(same, tf.float32.max, distances), axis=1)
    has_negative = tf.reduce_any(tf.logical_not(same), axis=1)
    return tf.where(has_negative, tf.nn.relu(hardest_positive - hardest_negative + margin), 0.0)


# ----------------------------------------------------------------------------------------------- sampling
class PKSampler:
    """P identities x K images per step, a pure function of (seed, step) (see the module docstring).

    Args:
      labels: training label of every sample (`record.train` pids, 0..P-1).
      num_identities: P.
      num_instances: K.
      seed: the sampler's seed.
    """

    def __init__(self, labels: Sequence[int], num_identities: int = 16, num_instances: int = 4, seed: int = 0):
        labels = np.asarray(labels)
        self.identities = np.unique(labels)
        if num_identities < 1 or num_instances < 1:
            raise ValueError(f"P and K must be positive, got P={num_identities}, K={num_instances}")
        if len(self.identities) < num_identities:
            raise ValueError(f"the training set has {len(self.identities)} identities, fewer than "
                             f"P={num_identities} per batch")
        self.members = {pid: np.flatnonzero(labels == pid) for pid in self.identities}
        self.num_identities, self.num_instances, self.seed = num_identities, num_instances, seed

    @property
    def batch_size(self) -> int:
        return self.num_identities * self.num_instances

    @property
    def steps_per_epoch(self) -> int:
        return len(self.identities) // self.num_identities

    def indices(self, step: int) -> np.ndarray:
        """Sample indices of `step`'s batch: P runs of K images, one identity per run."""
        epoch, slot = divmod(int(step), self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.identities)
        chosen = order[slot * self.num_identities:(slot + 1) * self.num_identities]
        rng = np.random.default_rng([self.seed, epoch, slot])
        runs = [rng.choice(self.members[pid], self.num_instances,
                           replace=len(self.members[pid]) < self.num_instances) for pid in chosen]
        return np.concatenate(runs).astype(np.int64)


# ----------------------------------------------------------------------------------------------- training
@dataclasses.dataclass(frozen=True)
class Recipe:
    """BoT's training recipe (Luo et al. 2019, Sec. 4 and Table 1), in epochs of `PKSampler.steps_per_epoch`."""

    num_identities: int = 16  # P
    num_instances: int = 4  # K
    epochs: int = 120
    learning_rate: float = 3.5e-4
    warmup_epochs: float = 10
    warmup_factor: float = 0.1  # 3.5e-5 -> 3.5e-4 linearly
    decay_epochs: tuple[float, ...] = (40, 70)
    decay_gamma: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    flip: bool = True
    random_erasing: bool = True
    eval_every: int = 0  # > 0: hold out training identities, evaluate on them every this many steps

    def schedule(self, steps_per_epoch: int):
        """Linear warm-up, then the rate times decay_gamma at each of decay_epochs."""
        boundaries = [int(e * steps_per_epoch) for e in self.decay_epochs]
        values = [self.learning_rate * self.decay_gamma ** i for i in range(len(boundaries) + 1)]
        after = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if boundaries
                 else self.learning_rate)
        return LinearWarmup(after, int(self.warmup_epochs * steps_per_epoch), self.warmup_factor)


def make_loss_fn(recipe: Recipe):
    """The engine `loss_fn` of the baseline: per-example label-smoothed CE + batch-hard triplet, and L2 decay."""

    def loss_fn(model, batch):
        images, labels, _ = batch
        outputs = model(images, training=True)
        cross_entropy = label_smoothing_cross_entropy(labels, outputs["logits"], recipe.label_smoothing)
        triplet = batch_hard_triplet_loss(outputs["f5"], labels, recipe.triplet_margin)
        decay = 0.5 * recipe.weight_decay * tf.add_n(
            [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in model.trainable_variables])
        return {"per_example_loss": cross_entropy + triplet, "regularization_loss": decay,
                "cross_entropy": tf.reduce_mean(cross_entropy), "triplet": tf.reduce_mean(triplet)}

    return loss_fn


def make_train_data(samples, sampler: PKSampler, image_size, seed: int, stop_step: int, recipe: Recipe):
    """`make_data(start_step)` for the engine: the P x K batches (images, labels, camids) of the steps from
    `start_step` to `stop_step`.

    Everything about a step's batch is a function of (seed, step): the sampler's images and the stateless seed of
    its augmentation (flip, random erasing), so a resumed run sees exactly the batches of an uninterrupted one.
    """
    paths = tf.constant([s.path for s in samples])
    labels = tf.constant([s.pid for s in samples], tf.int32)
    camids = tf.constant([s.camid for s in samples], tf.int32)
    batch = sampler.batch_size
    signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([batch], tf.int64))

    def load(step, index):
        return step, resize(decode(tf.gather(paths, index)), image_size), tf.gather(labels, index), \
            tf.gather(camids, index)

    def augment(steps, images, batch_labels, batch_camids):
        step_seed = tf.stack([tf.constant(seed, tf.int64), steps[0]])
        images = augment_and_normalize(images, "imagenet", step_seed, flip=recipe.flip,
                                       random_erasing=recipe.random_erasing)
        return images, batch_labels, batch_camids

    def make_data(start_step: int) -> tf.data.Dataset:
        steps = steps_dataset(lambda step: (np.int64(step), sampler.indices(step)), start_step, stop_step,
                              signature)
        images = steps.flat_map(lambda step, index: tf.data.Dataset.from_tensor_slices(
            (tf.fill([batch], step), index)))
        images = images.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return images.batch(batch, drop_remainder=True).map(augment).prefetch(1)

    return make_data


def make_validation(model: keras.Model, query, gallery, image_size, batch_size: int = 64):
    """`validate() -> {mAP, rank1, mINP}` of the test-time embedding (cosine distance) of `model` as it is when
    called, on held-out training identities' query and gallery samples (`engine.validation`)."""
    extractor = feature_extractor(model)
    forward = tf.function(lambda images: extractor(images, training=False)["embedding"],
                          input_signature=[tf.TensorSpec([None, *image_size, 3], tf.float32)])

    def embed(samples):
        return np.concatenate([forward(images).numpy() for images, _, _ in
                               make_dataset(samples, image_size=image_size, normalization="imagenet",
                                            batch_size=batch_size)])

    def validate() -> dict[str, float]:
        result = evaluate_features(embed(query), embed(gallery), [s.pid for s in query], [s.pid for s in gallery],
                                   [s.camid for s in query], [s.camid for s in gallery], metric="cosine")
        return validation.retrieval_scalars(result)

    return validate


def train(record, model_config: ModelConfig, recipe: Recipe, loop_config, strategy, pretrained: str | None = None,
          seed: int = 0) -> dict:
    """Train (or resume training) the baseline on `record.train`; returns the Trainer's result plus "model".

    `loop_config.max_steps` 0 means `recipe.epochs` epochs. The global batch P*K is split over the replicas, so P
    must be a multiple of their number (each replica then mines triplets among whole identities).
    With `recipe.eval_every` > 0 a few training identities are held out (`engine.validation`, drawn with `seed`)
    and evaluated every `eval_every` steps (`make_validation`); the classifier then has one class per identity
    trained on.
    """
    if recipe.eval_every:
        train_samples, held_out = validation.split_samples(record.train, seed)
        record = dataclasses.replace(record, train=train_samples)
        model_config = dataclasses.replace(model_config, num_classes=record.num_train_pids)
        validation_query, validation_gallery = validation.split_query_gallery(held_out)
    labels = [s.pid for s in record.train]
    if not 0 <= min(labels) <= max(labels) < model_config.num_classes:
        raise ValueError(f"{record.name} training labels span {min(labels)}..{max(labels)}, outside the "
                         f"{model_config.num_classes} classes of the model configuration")
    sampler = PKSampler(labels, recipe.num_identities, recipe.num_instances, seed)
    replicas = strategy.num_replicas_in_sync
    if recipe.num_identities % replicas:
        raise ValueError(f"P={recipe.num_identities} identities per batch cannot be split over {replicas} replicas "
                         "into whole identities: choose a multiple")
    if loop_config.max_steps == 0:
        loop_config = dataclasses.replace(loop_config, max_steps=recipe.epochs * sampler.steps_per_epoch)
    save_model_config(model_config, loop_config.train_dir)
    if not pretrained:
        logging.warning("no --pretrained weights: the ResNet backbone starts from random initialisation")
    with strategy.scope():
        model = build_baseline(model_config, pretrained)
        optimizer = precision.wrap_optimizer(keras.optimizers.Adam(recipe.schedule(sampler.steps_per_epoch)))
    hooks = [validation.EvalHook(make_validation(model, validation_query, validation_gallery,
                                                 model_config.image_size), recipe.eval_every)] \
        if recipe.eval_every else []
    trainer = Trainer(strategy, model, optimizer, loop_config, loss_fn=make_loss_fn(recipe), hooks=hooks)
    make_data = make_train_data(record.train, sampler, model_config.image_size, seed, loop_config.max_steps, recipe)
    return {**trainer.fit(make_data), "model": model}


def restore_model(checkpoint: str) -> tuple[keras.Model, ModelConfig, str]:
    """The trained baseline from a training directory (its latest checkpoint) or a checkpoint prefix.

    Returns (model, config, checkpoint path). The model configuration is read from the training directory's
    MODEL_CONFIG_FILE; a checkpoint that does not fit it is an error naming both.
    """
    directory = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    path = tf.train.latest_checkpoint(checkpoint) if os.path.isdir(checkpoint) else checkpoint
    if path is None or not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"--checkpoint={checkpoint}: no checkpoint found")
    config = load_model_config(directory)
    model = build_baseline(config)
    try:
        checkpoints.restore(tf.train.Checkpoint(model=model), path)
    except (ValueError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(f"checkpoint {path} does not fit the model of {directory}/{MODEL_CONFIG_FILE}: {err}") \
            from None
    return model, config, path
