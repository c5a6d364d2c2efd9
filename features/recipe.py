"""BoT's training recipe for the re-ID baseline (Luo et al. 2019, Sec. 4 and Table 1): schedule and loss.

Choices of ours (WORKSPACE.md lists them):
- Augmentation is horizontal flip and random erasing (p 0.5, data.augment); BoT's 10-pixel padding with random
  crop is not applied.
- BoT's weight decay 5e-4 is PyTorch Adam's L2 term (added to the gradient), applied here as the loss
  0.5 * 5e-4 * sum ||w||^2 over all trainable weights, not as Keras' decoupled `weight_decay`.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from engine.distribute import global_batch
from engine.schedules import LinearWarmup
from features.losses import batch_hard_triplet_loss, label_smoothing_cross_entropy


@dataclasses.dataclass(frozen=True)
class Recipe:
    """BoT's training recipe (Luo et al. 2019, Sec. 4 and Table 1), in epochs of
    `features.sampler.PKSampler.steps_per_epoch`."""

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
    """The engine `loss_fn` of the baseline: per-example label-smoothed CE + batch-hard triplet, and L2 decay.

    Under several replicas each replica's anchors mine their hardest positive and negative among the whole global
    batch (`engine.distribute.global_batch`), as one device mining the P x K batch would."""

    def loss_fn(model, batch):
        images, labels, _ = batch
        outputs = model(images, training=True)
        cross_entropy = label_smoothing_cross_entropy(labels, outputs["logits"], recipe.label_smoothing)
        candidates, candidate_labels = global_batch(outputs["f5"], labels)
        triplet = batch_hard_triplet_loss(outputs["f5"], labels, recipe.triplet_margin, candidates, candidate_labels)
        decay = 0.5 * recipe.weight_decay * tf.add_n(
            [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in model.trainable_variables])
        return {"per_example_loss": cross_entropy + triplet, "regularization_loss": decay,
                "cross_entropy": tf.reduce_mean(cross_entropy), "triplet": tf.reduce_mean(triplet)}

    return loss_fn
