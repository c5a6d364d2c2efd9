"""KVM-MN's training losses on the scores of a probe against its gallery set (`KVMMN((probe, gallery_set))`).

- `SetwiseMatchingLoss`: the matching-network loss of Eq. 7-8 (the paper's default).
- `PairwiseMatchingLoss`: every (probe, gallery image) pair classified as same / different person on its own,
  Table 3 row (D) "Pair" ("pairwise metric learning to classify positive and negative image pairs").

Targets (`y_true`), for scores `y_pred` of shape [B, M]: either the index of the positive in each gallery set,
shape [B] (integers 0..M-1), or per-image labels of the same shape as the scores (one-hot for Eq. 8, 0/1 for
the pairwise loss). Both losses take the scores as logits.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from kvmmn.layers import PACKAGE


def match_targets(y_true, y_pred):
    """Per-image targets shaped like `y_pred`: `y_true` as given if it has the scores' rank, else positive
    indices (one rank less) turned into one-hot rows. Out-of-range indices raise InvalidArgumentError."""
    if len(y_true.shape) == len(y_pred.shape):
        return ops.cast(y_true, y_pred.dtype)
    if len(y_true.shape) != len(y_pred.shape) - 1:
        raise ValueError(f"targets of shape {tuple(y_true.shape)} match neither scores of shape "
                         f"{tuple(y_pred.shape)} nor their positive indices (shape {tuple(y_pred.shape[:-1])})")
    set_size = ops.shape(y_pred)[-1]
    indices = ops.cast(y_true, "int32")
    tf.debugging.assert_non_negative(indices, message="positive index < 0")
    tf.debugging.assert_less(indices, ops.cast(set_size, "int32"), message="positive index >= gallery-set size M")
    return ops.cast(ops.equal(indices[..., None], ops.arange(set_size, dtype="int32")), y_pred.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SetwiseMatchingLoss(keras.losses.Loss):
    """Eq. 7-8: y_hat^A = sum_i softmax_i(f(I^A, I^{B_i})) y^{B_i} and l = -sum_i y^A(i) log y_hat^A(i).

    The gallery set's M images carry the labels 1..M (one each), so sum_i softmax_i y^{B_i} is the softmax
    vector itself and l is the softmax cross-entropy of the M scores against the positive's index.
    """

    def __init__(self, name: str = "setwise_matching_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.categorical_crossentropy(match_targets(y_true, y_pred), y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairwiseMatchingLoss(keras.losses.Loss):
    """Table 3 (D) "Pair": sigmoid cross-entropy of every score against its same-person label, averaged over the
    gallery set's M pairs (one positive and M - 1 negatives per probe when targets are positive indices); 1-D
    scores are independent pairs, one loss each."""

    def __init__(self, name: str = "pairwise_matching_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        losses = ops.binary_crossentropy(match_targets(y_true, y_pred), y_pred, from_logits=True)
        return ops.mean(losses, axis=-1) if len(y_pred.shape) > 1 else losses


LOSSES = {"setwise": SetwiseMatchingLoss, "pair": PairwiseMatchingLoss}


def make_loss(name: str, **kwargs) -> keras.losses.Loss:
    """The loss named "setwise" (Eq. 7-8) or "pair" (Table 3 row D), e.g. from a `--loss` flag."""
    if name not in LOSSES:
        raise ValueError(f"loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)
