"""ACP training (Sec. IV-B2) as a library: the recipe, the loss, and `train`, which the `acp-train` binary
(`acp.train`) and the demo call.

Each step draws `batch_size` training sequences (`acp.sequences`), predicts their correlations with ACP and
minimises the focal loss of Eq. 13 (gamma from the preset, Table II) with Adam (lr 2e-4, weight decay 5e-4) under a
linear warm-up over the first 10 epochs from factor 0.1. The ACP configuration is stored in the training directory
(`acp.checkpoint`): a restart with another preset or override is refused, naming both. The training directory is
acp-train's own (`engine.run_dir.claim`): a user's non-empty folder or another tool's training folder is refused
before anything is written. A run killed anywhere and restarted ends bit-identical to an uninterrupted one, dropout
included (`engine.train_loop`, `tests/test_faults.py`).

Choices of ours (the paper is silent or ambiguous; WORKSPACE.md lists them):
- Weight decay: "Adam optimizer with weight decay 5e-4" in the authors' PyTorch/FastReID setting is torch's Adam
  `weight_decay`, an L2 term added to the gradient (and then scaled by Adam's moments), not AdamW's decoupled
  decay. It is applied as the loss 0.5 * wd * sum ||w||^2 over all trainable weights, as `features.recipe` does for
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

import rerank
from acp import acp_rerank
from acp import checkpoint as acp_checkpoint
from acp import losses
from acp import model as acp_model
from acp import sequences
from engine import distribute, precision, run_dir, validation
from engine.schedules import LinearWarmup
from engine.train_loop import LoopConfig, Trainer, steps_dataset
from features import feature_file as feature_files
from rerank.evaluation import evaluate_features


TOOL = "acp-train"  # the owner named in its train_dir's marker (`engine.run_dir`)


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
    eval_every: int = 0  # > 0: hold out training identities, evaluate on them every this many steps (`validate`)

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


def correlation_metrics(labels, correlations) -> dict[str, tf.Tensor]:
    """Balanced accuracy (threshold 0.5) and average precision of predicted correlations over the real positions.

    Most positions of a training sequence are false matches (Sec. IV-B2's pools: the correct matches within K plus
    the first false ones), so plain accuracy rewards predicting "no match" everywhere (0.9 and more). Balanced
    accuracy, the mean of the true-positive and true-negative rates (of the classes present), is 0.5 for any
    constant predictor; average precision ranks all real positions of the batch by s and averages the precision at
    each correct match, ties counted as one threshold as scikit-learn's `average_precision_score` does, so a
    constant predictor scores the share of correct matches. Padding (label -1) is left out of both.

    `labels`, `correlations`: [B, k1] (any shape; labels 1 / 0 / -1). Fixed shapes throughout, so the metrics
    compile under XLA with the rest of the step.
    """
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1])
    scores = tf.reshape(tf.cast(correlations, tf.float32), [-1])
    real = tf.not_equal(labels, float(losses.IGNORE_LABEL))
    positive = tf.where(real, labels, 0.0)
    negative = tf.cast(real, tf.float32) - positive
    predicted = tf.cast(scores > 0.5, tf.float32)
    num_positive, num_negative = tf.reduce_sum(positive), tf.reduce_sum(negative)
    rates = tf.stack([tf.reduce_sum(predicted * positive) / tf.maximum(num_positive, 1.0),
                      tf.reduce_sum((1.0 - predicted) * negative) / tf.maximum(num_negative, 1.0)])
    present = tf.cast(tf.stack([num_positive, num_negative]) > 0, tf.float32)
    balanced = tf.reduce_sum(rates * present) / tf.maximum(tf.reduce_sum(present), 1.0)
    # average precision: padding sorted last (-inf), where it adds no correct match
    ranked = tf.where(real, scores, -np.inf)
    order = tf.argsort(ranked, direction="DESCENDING", stable=True)
    ranked, hits = tf.gather(ranked, order), tf.gather(positive, order)
    # precision at the end of each position's tie group: the positions scored >= its own
    group_end = tf.searchsorted(-ranked[None], -ranked[None], side="right")[0]
    precision = tf.gather(tf.cumsum(hits), group_end - 1) / tf.cast(group_end, tf.float32)
    average_precision = tf.reduce_sum(hits * precision) / tf.maximum(num_positive, 1.0)
    return {"balanced_accuracy": balanced, "average_precision": average_precision}


def make_loss_fn(gamma: float, l2_decay: float):
    """The engine `loss_fn`: per-sequence focal loss (Eq. 13), the L2 term, and `correlation_metrics` (balanced
    accuracy and average precision, which the imbalance of correct and false matches cannot fool)."""

    def loss_fn(model, batch):
        names = acp_model.input_names(model)
        correlations = model({name: batch[name] for name in names}, training=True)
        labels = batch["labels"]
        per_sequence = losses.correlation_focal_loss(labels, correlations, gamma)
        outputs = {"per_example_loss": per_sequence, "focal_loss": tf.reduce_mean(per_sequence),
                   **correlation_metrics(labels, correlations)}
        if l2_decay:
            outputs["regularization_loss"] = 0.5 * l2_decay * tf.add_n(
                [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in model.trainable_variables])
        return outputs

    return loss_fn


def validate(model: keras.Model, query: feature_files.FeatureSet, gallery: feature_files.FeatureSet,
             recipe: Recipe) -> dict[str, float]:
    """ACP's re-ranking (Eq. 1, k1 = N/C of the gallery, k2 = the training l2) of held-out training identities:
    mAP, rank-1 and mINP of the re-ranked distances and, prefixed "baseline_", of the original ones (`metric` of
    the training sequences). ACP learns when the first rise above the second."""
    metric = recipe.sequences.metric
    labels = (query.pid, gallery.pid, query.camid, gallery.camid)
    baseline = evaluate_features(query.embedding, gallery.embedding, *labels, metric=metric)
    reranked, _ = acp_rerank.rerank_feature_sets(query, gallery, model, k2=recipe.sequences.refinement_length,
                                                 metric=metric)
    return {**validation.retrieval_scalars(rerank.evaluate_reranked(reranked, *labels)),
            **validation.retrieval_scalars(baseline, "baseline_")}


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

    With `recipe.eval_every` > 0, `engine.validation` holds out a few training identities (drawn with `seed`),
    which ACP does not train on, and `validate` re-ranks them every `eval_every` steps (`val/...` scalars).
    Returns the Trainer's {"step", "metrics"} plus "model", "steps_per_epoch", "max_steps" and "validation" (the
    hook's [(step, values)], empty without `eval_every`).
    """
    # before any work: a user's folder or another tool's training folder is refused with nothing written
    run_dir.prepare(loop_config.train_dir, TOOL, acp_checkpoint.CONFIG_FILE)
    train_rows = features.train
    if recipe.eval_every:
        held = validation.hold_out(train_rows.pid, seed)
        held_rows, train_rows = train_rows.select(held), train_rows.select(~held)
        is_query = validation.query_mask(held_rows.pid, held_rows.camid)
        validation_query, validation_gallery = held_rows.select(is_query), held_rows.select(~is_query)
    if len(train_rows) < 2:
        raise ValueError(f"{features.origin}: needs at least 2 train rows to build training sequences, has "
                         f"{len(train_rows)}")
    config = fit_to_features(config or acp_model.make_config(preset), train_rows)
    tables = model_tables(train_rows, config)
    acp_checkpoint.save_config(loop_config.train_dir, preset, config, seed)
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
    hooks = [validation.EvalHook(lambda: validate(model, validation_query, validation_gallery, recipe),
                                 recipe.eval_every)] if recipe.eval_every else []
    trainer = Trainer(strategy, model, optimizer, loop_config, loss_fn=loss_fn, hooks=hooks)
    signature = sampler.output_signature(tables)

    def make_data(start_step):
        return steps_dataset(lambda step: sampler.batch(step, tables), start_step, loop_config.max_steps,
                             signature)

    logging.info("training %s on %d probes: %d steps per epoch, %d steps", acp_checkpoint.describe(preset, config),
                 pools.num_probes, sampler.steps_per_epoch, loop_config.max_steps)
    result = trainer.fit(make_data)
    return {**result, "model": model, "steps_per_epoch": sampler.steps_per_epoch,
            "max_steps": loop_config.max_steps, "validation": hooks[0].history if hooks else []}
