"""Identity-classification pre-training of KVM-MN's backbone: a stand-in for ImageNet pre-training where no
ImageNet weights can be had (the CPU demo, the tests).

The paper initialises the backbone from TF-slim's ImageNet Inception V1 (Sec. "Training the Network"): the
set-wise training starts from features that already describe appearance, and its hard negatives are mined from
the L2 neighbours of those features. A backbone trained from scratch has neither: its L2 neighbours are mostly
images of the probe's own camera (the same background), so hard mining from it teaches the shortcut of picking the
gallery image least like the probe (`kvmmn.sampling`). A short softmax classification of the TRAINING identities
(global average pool of the backbone map -> one linear layer -> cross-entropy) gives the backbone that start:
images of one person from different cameras are pulled together, so its pooled features rank people, and hard
negatives mined from them are the look-alikes the matching network has to tell apart.

Recipe (ours; chosen on held-out training identities of the synthetic dataset, see `kvmmn.demo`): Adam with its
learning rate decayed to 0 along a cosine, batches of images drawn uniformly at random, random horizontal flips and
a colour jitter (a random gain for the whole image and one per channel), which stands in for the variety of
illumination and white balance that ImageNet pre-training sees; the synthetic cameras differ exactly in those. The
classifier is thrown away afterwards.

The result is saved with `save_backbone` as a tf.train checkpoint holding only the backbone, which
`kvmmn.training.TrainConfig(pretrained=...)` loads like the TF-slim checkpoint of the paper.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from data.augment import random_flip
from data.pipeline import PRESETS, decode, normalize, resize
from data.record import Sample
from engine import atomic
from engine.progress import ProgressBar

NORMALIZATION = PRESETS["kvmmn"][1]
CHECKPOINT_KEY = "pretrained_backbone"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """How the backbone is pre-trained (see the module docstring).

    steps: optimizer steps. batch_size: images per step. learning_rate: Adam's initial one, decayed to 0 along a
      cosine over the steps. colour_jitter: j; each image is
    multiplied by a gain drawn from U(1 - j, 1 + j) and each of its channels by one from U(1 - j/2, 1 + j/2)
    (0: off). flip: random horizontal flips. seed: seeds the classifier's initialisation, the batches and the
    augmentation.
    """

    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    colour_jitter: float = 0.3
    flip: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name}={getattr(self, name)} must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"PretrainConfig.learning_rate={self.learning_rate} must be > 0")
        if not 0 <= self.colour_jitter < 1:
            raise ValueError(f"PretrainConfig.colour_jitter={self.colour_jitter} must be in [0, 1)")


def load_images(samples: Sequence[Sample], image_size) -> tf.Tensor:
    """[N, h, w, 3] float32 in [0, 255]: the images of `samples`, resized as the KVM-MN pipeline resizes them."""
    paths = tf.data.Dataset.from_tensor_slices([s.path for s in samples])
    images = paths.map(lambda path: resize(decode(path), image_size), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)
    return tf.stack(list(images.as_numpy_iterator()))


def colour_jitter(images: tf.Tensor, seed: tf.Tensor, amount: float) -> tf.Tensor:
    """Images [N, h, w, 3] in [0, 255] times a random gain per image and a random gain per channel (stateless)."""
    count = tf.shape(images)[:1]
    gain_seed, cast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    gain = tf.random.stateless_uniform(tf.concat([count, [1, 1, 1]], 0), gain_seed, 1 - amount, 1 + amount)
    cast = tf.random.stateless_uniform(tf.concat([count, [1, 1, 3]], 0), cast_seed, 1 - amount / 2, 1 + amount / 2)
    return tf.clip_by_value(images * gain * cast, 0.0, 255.0)


def pretrain_backbone(backbone: keras.Model, samples: Sequence[Sample], config: PretrainConfig = PretrainConfig(),
                      progress: bool = False) -> dict:
    """Train `backbone` (in place) to classify the identities of `samples` (the training list, pids 0..P-1).

    Returns {"loss", "accuracy"} (the mean over the last tenth of the steps, on the augmented batches),
    "num_identities" and "seconds".
    """
    if not samples:
        raise ValueError("backbone pre-training needs training images; the list is empty")
    image_size = tuple(backbone.input_shape[1:3])
    labels = np.array([s.pid for s in samples], np.int32)
    num_identities = int(labels.max()) + 1
    if labels.min() < 0 or num_identities < 2:
        raise ValueError(f"backbone pre-training needs training pids 0..P-1 with P >= 2; got {labels.min()}.."
                         f"{labels.max()}")
    started = time.perf_counter()
    images = load_images(samples, image_size)
    labels = tf.constant(labels)
    classifier = keras.layers.Dense(num_identities, name="identity_logits",
                                    kernel_initializer=keras.initializers.GlorotUniform(config.seed))
    classifier.build((None, backbone.output_shape[-1]))
    variables = backbone.trainable_variables + classifier.trainable_variables
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(config.learning_rate, config.steps))
    optimizer.build(variables)

    @tf.function
    def step(index, seed):
        batch = tf.gather(images, index)
        augment_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if config.colour_jitter:
            batch = colour_jitter(batch, augment_seed, config.colour_jitter)
        if config.flip:
            batch = random_flip(batch, flip_seed)
        target = tf.gather(labels, index)
        with tf.GradientTape() as tape:
            logits = classifier(tf.reduce_mean(backbone(normalize(batch, NORMALIZATION), training=True), axis=(1, 2)))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), target), tf.float32))
        return loss, accuracy

    bar = ProgressBar(config.steps, enabled=progress)
    tail = max(1, config.steps // 10)
    recent = []
    for number in range(config.steps):
        rng = np.random.default_rng([config.seed, number])
        index = rng.integers(len(samples), size=config.batch_size).astype(np.int32)
        loss, accuracy = step(tf.constant(index), tf.constant([config.seed, number], tf.int64))
        if number >= config.steps - tail:
            recent.append((float(loss), float(accuracy)))
        # a line every tenth of the steps where the output is a log (plain lines), as often as due on a terminal
        force = number + 1 == config.steps or (not bar.interactive and (number + 1) % tail == 0)
        if number == 0 or force or bar.due():  # step 1 starts the rate's clock, after the tracing
            bar.update(number + 1, {"loss": float(loss), "accuracy": float(accuracy)}, force=force)
    loss, accuracy = np.mean(recent, axis=0)
    if not np.isfinite(loss):
        raise FloatingPointError(f"backbone pre-training diverged (loss {loss}); lower the learning rate")
    return {"loss": float(loss), "accuracy": float(accuracy), "num_identities": num_identities,
            "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------- checkpoints
def save_backbone(backbone: keras.Model, prefix: str) -> str:
    """Write `backbone`'s variables to the checkpoint `prefix` (atomically: the index, which makes a checkpoint
    visible, is renamed into place last); returns `prefix`."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return atomic.write_checkpoint(tf.train.Checkpoint(**{CHECKPOINT_KEY: backbone}), prefix)


def is_backbone_checkpoint(prefix: str) -> bool:
    """Whether `prefix` is a checkpoint written by `save_backbone` (not, e.g., a TF-slim one)."""
    try:
        names = [name for name, _ in tf.train.list_variables(prefix)]
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError):
        return False
    return any(name.startswith(CHECKPOINT_KEY + "/") for name in names)


def load_backbone(backbone: keras.Model, prefix: str) -> None:
    """Restore `backbone` from a `save_backbone` checkpoint; ValueError naming `prefix` when it does not fit."""
    if not is_backbone_checkpoint(prefix):
        raise ValueError(f"{prefix}: not a backbone checkpoint of kvmmn.pretrain.save_backbone")
    status = tf.train.Checkpoint(**{CHECKPOINT_KEY: backbone}).read(prefix)
    try:
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as err:
        raise ValueError(f"{prefix}: the pre-trained backbone does not fit this model's backbone: {err}") from err
