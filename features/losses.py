"""The losses of the re-ID baseline (BoT, Luo et al. 2019): label-smoothed cross-entropy (epsilon 0.1) on the logits
and the batch-hard triplet loss (margin 0.3) on f5, the feature BEFORE the BNNeck; `features.recipe` sums them."""
from __future__ import annotations

import tensorflow as tf


def label_smoothing_cross_entropy(labels, logits, epsilon: float = 0.1):
    """Per-example cross-entropy against q = (1 - epsilon) one_hot + epsilon / N (BoT's label smoothing)."""
    logits = tf.cast(logits, tf.float32)
    targets = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1]) * (1.0 - epsilon)
    targets += epsilon / tf.cast(tf.shape(logits)[-1], tf.float32)
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def batch_hard_triplet_loss(features, labels, margin: float = 0.3, candidates=None, candidate_labels=None):
    """Per-anchor batch-hard triplet loss (Hermans et al. 2017): relu(max d(a, p) - min d(a, n) + margin) with
    Euclidean distances over the batch. An anchor without a positive uses d(a, p) = 0; one without a negative
    contributes 0.

    `features` / `labels` are the anchors; the positives and negatives are mined among `candidates` /
    `candidate_labels` (the whole batch, anchors included, when several replicas each hold a share of it:
    `engine.distribute.global_batch`), by default among the anchors themselves."""
    features = tf.cast(features, tf.float32)
    if candidates is None:
        candidates, candidate_labels = features, labels
    candidates = tf.cast(candidates, tf.float32)
    squared = tf.reduce_sum(tf.square(features), axis=1)
    candidate_squared = tf.reduce_sum(tf.square(candidates), axis=1)
    distances = squared[:, None] - 2.0 * tf.matmul(features, candidates, transpose_b=True) + candidate_squared[None, :]
    distances = tf.sqrt(tf.maximum(distances, 1e-12))
    same = tf.equal(labels[:, None], candidate_labels[None, :])
    hardest_positive = tf.reduce_max(tf.where(same, distances, 0.0), axis=1)
    hardest_negative = tf.reduce_min(tf.where(same, tf.float32.max, distances), axis=1)
    has_negative = tf.reduce_any(tf.logical_not(same), axis=1)
    return tf.where(has_negative, tf.nn.relu(hardest_positive - hardest_negative + margin), 0.0)
