"""The focal loss that supervises ACP's correlations, Eq. 12-13 (Lin et al., "Focal loss for dense object detection").

With p_i = s_i if y_i = 1 else 1 - s_i (Eq. 12), one sequence's loss is FL = sum_{i=1}^{k1} -(1 - p_i)^gamma log p_i
(Eq. 13), gamma from Table II (`ACPConfig.focal_gamma`: 2 Basic, 1 XL).

`keras.losses.binary_focal_crossentropy` computes the same per-element term (without class balancing, its
`alpha` is unused), but it averages over the last axis where Eq. 13 sums over the k1 neighbours, and it cannot
leave out the padding of shorter sequences. So the element terms come from Keras and the reduction is ours: a sum
over each sequence's real positions. Labels: 1 = same identity as the probe, 0 = not, -1 = padding (ignored).
The batch is averaged over sequences (the paper does not say how it reduces a batch).
"""
import keras
from keras import ops

IGNORE_LABEL = -1


def correlation_focal_loss(y_true, y_pred, gamma=2.0):
    """Eq. 13 per sequence: `y_true` `[B, k1]` in {1, 0, -1 (ignored)}, `y_pred` s `[B, k1]` -> `[B]`."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    valid = ops.not_equal(y_true, IGNORE_LABEL)
    labels = ops.where(valid, y_true, ops.zeros_like(y_true))
    # A trailing axis of one makes Keras' mean over the last axis the identity, leaving the element terms.
    terms = keras.losses.binary_focal_crossentropy(
        ops.expand_dims(labels, -1), ops.expand_dims(y_pred, -1), gamma=gamma)
    return ops.sum(ops.where(valid, terms, ops.zeros_like(terms)), axis=-1)


@keras.saving.register_keras_serializable(package="acp")
class CorrelationFocalLoss(keras.losses.Loss):
    """Keras loss of Eq. 12-13: per-sequence sums of focal terms over real positions, averaged over the batch.

    Use `CorrelationFocalLoss(gamma=config.focal_gamma)`; padded positions carry the label -1.
    """

    def __init__(self, gamma=2.0, reduction="sum_over_batch_size", name="correlation_focal_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = gamma

    def call(self, y_true, y_pred):
        return correlation_focal_loss(y_true, y_pred, self.gamma)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
