"""Backbones of the re-ID baseline (`features.head.build_baseline`), by name (`register_backbone`; a user registers
theirs the same way): built in, "resnet", the ResNet-50 of the strong baseline (BoT, Luo et al. 2019) that ACP's
features come from (ACP Sec. IV-B1), returning the C3, C4, C5 blocks that ACP's multi-block fusion pools (ACP Sec.
III-B1); and the loader of ImageNet weight files.

Choices of ours (WORKSPACE.md lists them):
- The backbone is our own Keras build of ResNet-50 v1 with the layer names and layout of
  `keras.applications.ResNet50` (stride on the first 1x1 convolution of a stage, biases on every convolution), so
  its ImageNet weight files load by layer name; `last_stride` changes the stride of conv5_block1, which
  keras.applications does not expose. Those weights were converted from Caffe and expect BGR pixels in [0, 255]
  minus the Caffe mean, while our pipeline gives RGB ImageNet mean/std (torchvision's convention, as FastReID);
  `ImageNetToCaffe` converts in the graph.
- Batch norm momentum 0.9 in Keras' convention (PyTorch's 0.1, what BoT / FastReID train with) instead of Keras'
  0.99: after a short training the moving statistics would otherwise still be far from the batch statistics
  (measured on the demo's synthetic run: mAP 10% with 0.99, 28% with 0.9).
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import h5py
import keras
import numpy as np

from data.pipeline import IMAGENET_MEAN, IMAGENET_STD

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_BN_EPSILON = 1.001e-5  # keras.applications' ResNet value, so that its ImageNet statistics apply unchanged
# PyTorch's momentum 0.1 in Keras' convention, as BoT / FastReID train (Keras' default 0.99 averages over ~100
# steps, so a short run would evaluate with moving statistics still a third of the way from their initial values).
BN_MOMENTUM = 0.9
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="features")
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
    bn = dict(axis=-1, momentum=BN_MOMENTUM, epsilon=_BN_EPSILON)
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
    x = keras.layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=_BN_EPSILON, name="conv1_bn")(x)
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


# ----------------------------------------------------------------------------------------------- registry
_BACKBONES: dict[str, Callable] = {}


def register_backbone(name: str, build: Callable, replace: bool = False) -> Callable:
    """Make `build(input_shape, config) -> keras.Model` the backbone of `ModelConfig(backbone=name)`.

    The model maps images [B, H, W, 3] to a list of its last three blocks' feature maps [B, h, w, C3/C4/C5], of
    any widths: the baseline pools them into f3, f4, f5 (ACP's multi-block inputs; the feature file records their
    widths) and puts its BNNeck embedding on the last. `config` is the `features.head.ModelConfig` (image size,
    and the ResNet fields the built-in backbone reads). A name already taken is an error unless `replace`.
    """
    if not callable(build):
        raise ValueError(f"backbone {name!r}: build must be callable, got {build!r}")
    if name in _BACKBONES and not replace and _BACKBONES[name] is not build:
        raise ValueError(f"a backbone named {name!r} is already registered; pass replace=True to replace it")
    _BACKBONES[name] = build
    return build


def get_backbone(name: str) -> Callable:
    """The backbone builder registered as `name`; a ValueError names the registered ones otherwise."""
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {sorted(_BACKBONES)}")
    return _BACKBONES[name]


def backbone_names() -> tuple[str, ...]:
    return tuple(sorted(_BACKBONES))


def _resnet(input_shape, config) -> keras.Model:
    """The built-in backbone: ResNet v1 of `config.depth` (or `config.blocks`) with `config.last_stride`."""
    return resnet_v1(input_shape, config.stage_blocks, config.last_stride,
                     name=f"resnet{config.depth}" if config.blocks is None else "resnet")


register_backbone("resnet", _resnet)
