"""Inception V1 (GoogLeNet) as TF-slim builds it, in Keras 3, with TF-slim's names: KVM-MN's backbone.

KVM-MN (AAAI 2019, Sec. "Training the Network") takes the `Mixed_4f` feature map of TF-slim's ImageNet-
pretrained Inception V1 for 224x112 images (a 14x7x832 map, output stride 16), and trains with weight decay
0.0002: pass `weight_decay=2e-4`, which this module interprets as slim does (see below). This module reproduces TF-slim's
`nets/inception_v1.py` (`inception_v1_base` and the `inception_v1` classification head) under
`inception_utils.inception_arg_scope()` layer for layer, so that the official `inception_v1.ckpt` loads onto it
(`load_slim_checkpoint`) and gives the same activations:

- every convolution is conv (no bias) -> batch norm -> ReLU, SAME padding, stride 1 unless stated; max pools use
  SAME padding (3x3 stride 2 between stages, 2x2 stride 2 before Mixed_5b, 3x3 stride 1 in each block's Branch_3);
- batch norm has beta but no gamma (slim's `scale=False`), epsilon 0.001, moving-average decay 0.9997 (Keras's
  `momentum`: both compute `moving = decay * moving + (1 - decay) * batch`);
- weights of the stem and the inception blocks are initialised from a truncated normal of stddev 0.01 (slim's
  `trunc_normal(0.01)`), the logits from a He-style truncated normal (slim's `variance_scaling_initializer()`);
- weight decay: slim's `l2_regularizer(wd)` adds `wd * tf.nn.l2_loss(w) = wd * sum(w**2) / 2`, while Keras's
  `regularizers.L2(l2)` adds `l2 * sum(w**2)`; the same penalty is therefore `L2(wd / 2)`, i.e. `L2(2e-5)` for
  slim's default 4e-5, on every convolution kernel (not on biases or batch-norm variables), in `model.losses`;
- TF-slim's quirk is kept: Mixed_5b's Branch_2 3x3 convolution is scoped `Conv2d_0a_3x3` (everywhere else
  `Conv2d_0b_3x3`), since that is the name in the checkpoints;
- the head (`include_top=True`) is AvgPool_0a_7x7 (7x7, stride 1, VALID: 1x1 for a 224x224 input; or a global
  mean with `global_pool=True`, for any input size), Dropout_0b (keep probability 0.8), Conv2d_0c_1x1 (logits,
  with bias, no batch norm, no ReLU) and the spatial squeeze to (batch, num_classes).

Layer names are the slim scopes with `/` written `__` (see `kvmmn.slim_checkpoint`): the convolution
`Mixed_4f__Branch_1__Conv2d_0b_3x3`, its batch norm `..._3x3__BatchNorm`, its ReLU `..._3x3__Relu`; an endpoint
is the layer named after it (`Mixed_4f` is the concatenation). Any input size works; with an HxW input Mixed_4f is
ceil(H/16) x ceil(W/16).

Batch-norm modes (`batchnorm=`) for fine-tuning:
- "trainable": Keras's usual batch norm: batch statistics when training, moving averages updated (slim's
  `is_training=True`). One difference to slim remains: slim's fused batch norm updates the moving variance with
  the unbiased batch variance (times n/(n-1), n = batch * H * W values per channel), Keras with the biased one.
- "frozen": the moving statistics from the checkpoint are used in training as in inference and never updated,
  while beta stays trainable. This is what small per-replica batches (a few images per GPU) need, since their
  batch statistics are too noisy to normalise with or to average into the moving statistics.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import keras

from kvmmn.slim_checkpoint import (CheckpointMismatchError, LoadSummary, keras_name, load_slim_checkpoint,
                                   slim_scope, slim_variable_map)

__all__ = ["InceptionV1", "ENDPOINTS", "HEAD_ENDPOINTS", "SlimBatchNormalization", "load_slim_checkpoint",
           "LoadSummary", "CheckpointMismatchError", "keras_name", "slim_scope", "slim_variable_map"]

BATCHNORM_DECAY = 0.9997
BATCHNORM_EPSILON = 0.001
BATCHNORM_MODES = ("trainable", "frozen")


class _Conv(NamedTuple):
    filters: int
    kernel: int
    stride: int


class _MaxPool(NamedTuple):
    size: int


class _Mixed(NamedTuple):
    """Output channels of an inception block: Branch_0 1x1; Branch_1 1x1 -> 3x3; Branch_2 1x1 -> 3x3;
    Branch_3 3x3 max pool -> 1x1. `branch_2_3x3_scope` is the slim scope name of Branch_2's 3x3 convolution."""
    branch_0: int
    branch_1: tuple[int, int]
    branch_2: tuple[int, int]
    branch_3: int
    branch_2_3x3_scope: str = "Conv2d_0b_3x3"


# TF-slim's inception_v1_base, endpoint by endpoint (Szegedy et al. 2015, Table 1, with slim's 3x3 in Branch_2).
_ARCHITECTURE = (
    ("Conv2d_1a_7x7", _Conv(64, 7, 2)),
    ("MaxPool_2a_3x3", _MaxPool(3)),
    ("Conv2d_2b_1x1", _Conv(64, 1, 1)),
    ("Conv2d_2c_3x3", _Conv(192, 3, 1)),
    ("MaxPool_3a_3x3", _MaxPool(3)),
    ("Mixed_3b", _Mixed(64, (96, 128), (16, 32), 32)),
    ("Mixed_3c", _Mixed(128, (128, 192), (32, 96), 64)),
    ("MaxPool_4a_3x3", _MaxPool(3)),
    ("Mixed_4b", _Mixed(192, (96, 208), (16, 48), 64)),
    ("Mixed_4c", _Mixed(160, (112, 224), (24, 64), 64)),
    ("Mixed_4d", _Mixed(128, (128, 256), (24, 64), 64)),
    ("Mixed_4e", _Mixed(112, (144, 288), (32, 64), 64)),
    ("Mixed_4f", _Mixed(256, (160, 320), (32, 128), 128)),
    ("MaxPool_5a_2x2", _MaxPool(2)),
    ("Mixed_5b", _Mixed(256, (160, 320), (32, 128), 128, branch_2_3x3_scope="Conv2d_0a_3x3")),
    ("Mixed_5c", _Mixed(384, (192, 384), (48, 128), 128)),
)
ENDPOINTS = tuple(name for name, _ in _ARCHITECTURE)
# Endpoints of the classification head; "global_pool" replaces "AvgPool_0a_7x7" when global_pool=True.
HEAD_ENDPOINTS = ("AvgPool_0a_7x7", "global_pool", "Logits")


@keras.saving.register_keras_serializable(package="kvmmn")
class SlimBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalisation as in TF-slim's Inception arg scope, optionally with frozen statistics.

    With `freeze_statistics=True` the layer normalises with its moving mean and variance in training as in
    inference and never updates them, while its beta (and gamma, if any) still train: see the module docstring,
    batch-norm mode "frozen". (Keras's `trainable=False` would also freeze beta.)
    """

    def __init__(self, freeze_statistics: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.freeze_statistics = bool(freeze_statistics)

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False if self.freeze_statistics else training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "freeze_statistics": self.freeze_statistics}


class _LayerFactory:
    """Makes the layers of one model with its shared settings; hands every initialiser its own seed."""

    def __init__(self, weight_decay: float, freeze_statistics: bool, seed: int | None):
        self.weight_decay = weight_decay
        self.freeze_statistics = freeze_statistics
        self._seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)

    def seed(self) -> int | None:
        return next(self._seeds)

    def regularizer(self):
        # Keras's L2 has no 1/2: see the module docstring.
        return keras.regularizers.L2(self.weight_decay / 2.0) if self.weight_decay else None

    def conv_bn_relu(self, x, spec: _Conv, scope: str):
        x = keras.layers.Conv2D(
            spec.filters, spec.kernel, strides=spec.stride, padding="same", use_bias=False,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01, seed=self.seed()),
            kernel_regularizer=self.regularizer(), name=keras_name(scope))(x)
        x = SlimBatchNormalization(
            freeze_statistics=self.freeze_statistics, momentum=BATCHNORM_DECAY, epsilon=BATCHNORM_EPSILON,
            center=True, scale=False, name=keras_name(scope + "/BatchNorm"))(x)
        return keras.layers.ReLU(name=keras_name(scope + "/Relu"))(x)

    def mixed(self, x, spec: _Mixed, scope: str):
        branch_0 = self.conv_bn_relu(x, _Conv(spec.branch_0, 1, 1), f"{scope}/Branch_0/Conv2d_0a_1x1")
        branch_1 = self.conv_bn_relu(x, _Conv(spec.branch_1[0], 1, 1), f"{scope}/Branch_1/Conv2d_0a_1x1")
        branch_1 = self.conv_bn_relu(branch_1, _Conv(spec.branch_1[1], 3, 1), f"{scope}/Branch_1/Conv2d_0b_3x3")
        branch_2 = self.conv_bn_relu(x, _Conv(spec.branch_2[0], 1, 1), f"{scope}/Branch_2/Conv2d_0a_1x1")
        branch_2 = self.conv_bn_relu(branch_2, _Conv(spec.branch_2[1], 3, 1),
                                     f"{scope}/Branch_2/{spec.branch_2_3x3_scope}")
        branch_3 = keras.layers.MaxPooling2D(3, strides=1, padding="same",
                                             name=keras_name(f"{scope}/Branch_3/MaxPool_0a_3x3"))(x)
        branch_3 = self.conv_bn_relu(branch_3, _Conv(spec.branch_3, 1, 1), f"{scope}/Branch_3/Conv2d_0b_1x1")
        return keras.layers.Concatenate(axis=-1, name=keras_name(scope))([branch_0, branch_1, branch_2, branch_3])

    def head(self, x, num_classes: int, dropout_keep_prob: float, global_pool: bool) -> dict:
        end_points = {}
        if global_pool:
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=keras_name("Logits/global_pool"))(x)
            end_points["global_pool"] = x
        else:
            x = keras.layers.AveragePooling2D(7, strides=1, padding="valid",
                                              name=keras_name("Logits/AvgPool_0a_7x7"))(x)
            end_points["AvgPool_0a_7x7"] = x
        if num_classes:
            x = keras.layers.Dropout(1.0 - dropout_keep_prob, seed=self.seed(),
                                     name=keras_name("Logits/Dropout_0b"))(x)
            x = keras.layers.Conv2D(
                num_classes, 1, use_bias=True,
                kernel_initializer=keras.initializers.HeNormal(seed=self.seed()),
                kernel_regularizer=self.regularizer(), name=keras_name("Logits/Conv2d_0c_1x1"))(x)
            # A reshape, not a flatten: a map larger than 1x1 (input over 224 without global_pool) is an error.
            end_points["Logits"] = keras.layers.Reshape((num_classes,),
                                                        name=keras_name("Logits/SpatialSqueeze"))(x)
        return end_points


def InceptionV1(final_endpoint: str = "Mixed_4f", include_top: bool = False, num_classes: int = 1001,
                input_shape: tuple = (None, None, 3), batchnorm: str = "trainable", weight_decay: float = 4e-5,
                dropout_keep_prob: float = 0.8, global_pool: bool = False,
                endpoints: Sequence[str] | None = None, seed: int | None = None,
                name: str = "InceptionV1") -> keras.Model:
    """TF-slim's Inception V1 up to `final_endpoint` (one of `ENDPOINTS`), as a functional Keras model.

    Args:
      final_endpoint: the last endpoint built; "Mixed_4f" for KVM-MN. Must be "Mixed_5c" with `include_top`.
      include_top: add slim's classification head (AvgPool_0a_7x7, Dropout_0b, Conv2d_0c_1x1, squeeze).
      num_classes: logits of the head (1001 for the ImageNet checkpoint: class 0 is "background"); 0 or None
        ends the head at the average pool, as slim does.
      input_shape: (height, width, 3); None for any size. Inputs are images in slim's [-1, 1] range.
      batchnorm: "trainable" or "frozen" (see the module docstring).
      weight_decay: slim's weight decay; the Keras L2 factor is half of it (see the module docstring).
      dropout_keep_prob: slim's keep probability of Dropout_0b.
      global_pool: with `include_top`, pool Mixed_5c by a global mean (any input size) instead of 7x7 VALID.
      endpoints: names (from `ENDPOINTS`, and `HEAD_ENDPOINTS` with `include_top`) the model returns as a dict;
        by default the model returns the single last tensor (the logits with `include_top`).
      seed: seeds the initialisers and dropout; None draws from Keras's global seed.
      name: the model's name.
    """
    if final_endpoint not in ENDPOINTS:
        raise ValueError(f"final_endpoint={final_endpoint!r} is not an Inception V1 endpoint; choose one of "
                         f"{', '.join(ENDPOINTS)}")
    if include_top and final_endpoint != ENDPOINTS[-1]:
        raise ValueError(f"include_top=True puts the classification head on {ENDPOINTS[-1]}, so final_endpoint "
                         f"must be {ENDPOINTS[-1]!r}, not {final_endpoint!r}")
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm={batchnorm!r}: choose one of {', '.join(BATCHNORM_MODES)}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay} must be >= 0")
    if not 0.0 < dropout_keep_prob <= 1.0:
        raise ValueError(f"dropout_keep_prob={dropout_keep_prob} must be in (0, 1]")

    layers = _LayerFactory(weight_decay, batchnorm == "frozen", seed)
    images = keras.Input(shape=tuple(input_shape), name="images")
    end_points = {}
    x = images
    for endpoint, spec in _ARCHITECTURE[:ENDPOINTS.index(final_endpoint) + 1]:
        if isinstance(spec, _Conv):
            x = layers.conv_bn_relu(x, spec, endpoint)
        elif isinstance(spec, _MaxPool):
            x = keras.layers.MaxPooling2D(spec.size, strides=2, padding="same", name=endpoint)(x)
        else:
            x = layers.mixed(x, spec, endpoint)
        end_points[endpoint] = x
    if include_top:
        head = layers.head(x, num_classes, dropout_keep_prob, global_pool)
        end_points.update(head)
        x = list(head.values())[-1]

    if endpoints is None:
        return keras.Model(images, x, name=name)
    unknown = [e for e in endpoints if e not in end_points]
    if unknown:
        raise ValueError(f"endpoints {unknown} are not built by this model; it has {', '.join(end_points)}")
    return keras.Model(images, {e: end_points[e] for e in endpoints}, name=name)
