"""ACP training (Sec. IV-B2) as a library: the recipe, the loss, and `train`, which the `acp-train` binary
(`acp.train`) and the demo call.

Each step draws `batch_size` training sequences (`acp.sequences`), predicts their correlations with ACP and
minimises the focal loss of Eq. 13 (gamma from the preset, Table II) with Adam (lr 2e-4, weight decay 5e-4) under a
linear warm-up over the first 10 epochs from factor 0.1. The ACP configuration is stored in the training directory
(`acp.checkpoint`): a restart with another preset or override is refused, naming both.

Choices of ours (the paper is silent or ambiguous; WORKSPACE.md lists them):
- Weight decay: "Adam optimizer with weight decay 5e-4" in the authors' PyTorch/FastReID setting is torch's Adam
  `weight_decay`, an L2 term added to the gradient (and then scaled by Adam's moments), not AdamW's decoupled
  decay. It is applied as the loss 0.5 * wd * sum ||w||^2 over all trainable weights, as `acp.baseline` does for
  BoT; `Recipe.decoupled_weight_decay` switches to Keras' decoupled decay (AdamW) instead.
- An epoch is one pass over the training probes (`SequenceSampler.steps_per_epoch` = train images // batch).
- After the warm-up the rate stays constant (the paper names no decay); a `max_steps` of 0 trains `Recipe.epochs`
  epochs (50), a number the paper does not give either ("until convergence").
- The ACP input width follows the file: without multi-block fusion the embedding width of the file is used.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from acp import checkpoint as acp_checkpoint
from acp import features as feature_files
from acp import losses
from acp import model as acp_model
from acp import sequences
from engine import distribute, precision
from engine.schedules import LinearWarmup
from engine.train_loop import LoopConfig, Trainer, steps_dataset


@dataclasses.dataclass(frozen=True)
class Recipe:
    """ACP's training recipe (Sec. IV-B2); `epochs` and `decoupled_weight_decay` are ours (module docstring)."""

    batch_size: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 5e-4
    decoupled_weight_decay: bool = False
    epochs: int = 50
    warmup_epochs: float = 10
    warmup_factor: float = 0.1
    sequences: sequences.SequenceConfig = sequences.SequenceConfig()

    def schedule(self, steps_per_epoch: int) -> LinearWarmup:
        """Linear warm-up over `warmup_epochs` from `warmup_factor`, then the constant rate."""
        return LinearWarmup(self.learning_rate, int(round(self.warmup_epochs * steps_per_epoch)), self.warmup_factor)

    def optimizer(self, steps_per_epoch: int) -> keras.optimizers.Optimizer:
        decay = self.weight_decay if self.decoupled_weight_decay else None
        return precision.wrap_optimizer(keras.optimizers.Adam(self.schedule(steps_per_epoch), weight_decay=decay))


def model_tables(features: feature_files.FeatureSet, config: acp_model.ACPConfig) -> dict[str, np.ndarray]:
    """The per-image arrays ACP reads, by input name: f3/f4/f5 with multi-block fusion, else the embedding.

    Raises ValueError naming the file when it lacks them or their widths differ from the configuration's.
    """
    if config.use_fusion and not features.has_multi_block:
        raise ValueError(f"{features.origin}: has no multi-block features (f3, f4, f5), which ACP's multi-block "
                         "fusion reads; re-extract with acp-extract, or train without fusion "
                         "(--override=use_fusion=false)")
    tables = {name: getattr(features, name) for name in config.feature_names}
    for (name, table), width in zip(tables.items(), config.feature_dims):
        if table.shape[1] != width:
            raise ValueError(f"{features.origin}: field '{name}' has width {table.shape[1]}, but the ACP model "
                             f"expects {width} ({'block_dims' if config.use_fusion else 'embedding_dim'})")
    return tables


def fit_to_features(config: acp_model.ACPConfig, features: feature_files.FeatureSet) -> acp_model.ACPConfig:
    """Without multi-block fusion, `embedding_dim` taken from the file (the ACP input is its embedding)."""
    return config if config.use_fusion else config.replace(embedding_dim=features.dim)


def make_loss_fn(gamma: float, l2_decay: float):
    """The engine `loss_fn`: per-sequence focal loss (Eq. 13), the L2 term, and accuracy at threshold 0.5."""

    def loss_fn(model, batch):
        names = acp_model.input_names(model)
        correlations = model({name: batch[name] for name in names}, training=True)
        labels = batch["labels"]
        per_sequence = losses.correlation_focal_loss(labels, correlations, gamma)
        real = tf.cast(tf.not_equal(labels, losses.IGNORE_LABEL), tf.float32)
        correct = tf.cast(tf.equal(tf.cast(correlations > 0.5, tf.float32), labels), tf.float32) * real
        outputs = {"per_example_loss": per_sequence, "focal_loss": tf.reduce_mean(per_sequence),
                   "accuracy": tf.reduce_sum(correct) / tf.maximum(tf.reduce_sum(real), 1.0)}
        if l2_decay:
            outputs["regularization_loss"] = 0.5 * l2_decay * tf.add_n(
                [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in model.trainable_variables])
        return outputs

    return loss_fn


def train(features: feature_files.FeatureSet, loop_config: LoopConfig, preset: str = "basic",
          config: acp_model.ACPConfig | None = None, recipe: Recipe = Recipe(), strategy=None, seed: int = 0,
          chunk_size: int = sequences.DEFAULT_CHUNK_SIZE, verbose: int = 1) -> dict:
    """Train (or resume training) ACP on the train rows of `features`.

    Args:
      features: a FeatureSet holding train rows (query / gallery rows are ignored).
      loop_config: the engine loop; `max_steps` 0 means `recipe.epochs` epochs.
      preset, config: the ACP preset name and its (possibly overridden) configuration (default: the preset's).
      recipe: batch, optimizer, warm-up and sequence settings.
      strategy: a tf.distribute strategy (default: one_device).
      seed: seed of the sequence sampler.
      chunk_size: probes per chunk of the neighbour search.

    Returns the Trainer's {"step", "metrics"} plus "model", "steps_per_epoch" and "max_steps".
    """
    train_rows = features.train
    if len(train_rows) < 2:
        raise ValueError(f"{features.origin}: needs at least 2 train rows to build training sequences, has "
                         f"{len(train_rows)}")
    config = fit_to_features(config or acp_model.make_config(preset), train_rows)
    tables = model_tables(train_rows, config)
    acp_checkpoint.save_config(loop_config.train_dir, preset, config)
    pools = sequences.load_or_mine_pools(loop_config.train_dir, train_rows.embedding, train_rows.pid,
                                         recipe.sequences, chunk_size, verbose)
    sampler = sequences.SequenceSampler(pools, recipe.sequences, recipe.batch_size, seed)
    if loop_config.max_steps == 0:
        loop_config = dataclasses.replace(loop_config, max_steps=recipe.epochs * sampler.steps_per_epoch)
    strategy = strategy or distribute.make_strategy("one_device")
    with strategy.scope():
        model = acp_model.build_acp(config)
        optimizer = recipe.optimizer(sampler.steps_per_epoch)
    loss_fn = make_loss_fn(config.focal_gamma, 0.0 if recipe.decoupled_weight_decay else recipe.weight_decay)
    trainer = Trainer(strategy, model, optimizer, loop_config, loss_fn=loss_fn)
    signature = sampler.output_signature(tables)

    def make_data(start_step):
        return steps_dataset(lambda step: sampler.batch(step, tables), start_step, loop_config.max_steps,
                             signature)

    logging.info("training %s on %d probes: %d steps per epoch, %d steps", acp_checkpoint.describe(preset, config),
                 pools.num_probes, sampler.steps_per_epoch, loop_config.max_steps)
    result = trainer.fit(make_data)
    return {**result, "model": model, "steps_per_epoch": sampler.steps_per_epoch,
            "max_steps": loop_config.max_steps}
