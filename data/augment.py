"""The papers' training augmentation as stateless TensorFlow ops on a batch of images (N, H, W, C), float32 in
[0, 255].

KVM-MN ("Data augmentation", Sec. "Training the Network"): random rotation by an angle drawn uniformly from
[-pi/16, pi/16] and random erasing (Zhong et al. 2017); the ACP baseline (FastReID's strong baseline) uses random
erasing and horizontal flips.

Every random draw takes an explicit stateless seed (a shape-[2] integer tensor; one per batch, each image gets its
own draws from it), so that a seeded tf.data pipeline gives the same images however many parallel calls its map
runs, and on every run. Working on whole batches keeps the per-op overhead of tf.data maps small.

Why not the Keras 3 layers (tensorflow-addons, which provided rotation and erasing before, does not import with
Keras 3):
- `keras.layers.RandomRotation(factor=1/32)` draws the same angle distribution (its factor is a fraction of 2*pi,
  and pi/16 = 2*pi/32), but it keeps its random state in a variable, so its draws inside a parallel tf.data map
  depend on thread timing. `random_rotation` calls the op that layer uses (ImageProjectiveTransformV3) with a
  stateless angle instead.
- `keras.layers.RandomErasing` (Keras 3.15) is a different algorithm: it samples the erased height and width
  fractions independently as sqrt(U(scale)) with no aspect-ratio parameter, treats a scalar `factor` as the upper
  bound of a random probability, and fills with Gaussian noise. `random_erasing` implements Zhong et al.
"""
from __future__ import annotations

import math

import tensorflow as tf

MAX_ROTATION = math.pi / 16
ERASING_PROBABILITY = 0.5
ERASING_AREA = (0.02, 0.4)
ERASING_ASPECT = (0.3, 1 / 0.3)
ERASING_ATTEMPTS = 100
IMAGENET_MEAN_PIXEL = (0.485 * 255, 0.456 * 255, 0.406 * 255)
FILL_MODES = ("reflect", "nearest", "constant", "wrap")


def rotate(images: tf.Tensor, angles: tf.Tensor, fill_mode: str = "reflect", fill_value: float = 0.0) -> tf.Tensor:
    """Rotate each image of `images` (N, H, W, C) about its centre by `angles` (N,) radians, counter-clockwise as
    displayed.

    Bilinear sampling; pixels that come from outside the image follow `fill_mode` (one of FILL_MODES, as in
    `keras.layers.RandomRotation`, whose default "reflect" is also ours).
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    angles = tf.cast(angles, tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    zero = tf.zeros_like(angles)
    # The op maps each output pixel to the input pixel it samples: the inverse rotation (y points down).
    transforms = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                           sin, cos, cy - sin * cx - cos * cy, zero, zero], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=tf.constant(fill_value),
        interpolation="BILINEAR", fill_mode=fill_mode.upper())


def rotation_angles(seed: tf.Tensor, count, max_angle: float = MAX_ROTATION) -> tf.Tensor:
    """`count` angles drawn uniformly from [-max_angle, max_angle] radians (KVM-MN: pi/16)."""
    return tf.random.stateless_uniform(tf.reshape(count, [1]), seed, -max_angle, max_angle)


def random_rotation(images: tf.Tensor, seed: tf.Tensor, max_angle: float = MAX_ROTATION,
                    fill_mode: str = "reflect") -> tf.Tensor:
    """Rotate each image by its own angle from `rotation_angles`."""
    return rotate(images, rotation_angles(seed, tf.shape(images)[0], max_angle), fill_mode)


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < 0.5
    return _select(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _select(mask: tf.Tensor, chosen: tf.Tensor, others: tf.Tensor) -> tf.Tensor:
    """`tf.where(mask, chosen, others)` for a mask broadcast over trailing axes, as arithmetic: TensorFlow's
    broadcasting select is about twice as slow on CPU."""
    return others + tf.cast(mask, others.dtype) * (chosen - others)


def erasing_boxes(seed: tf.Tensor, count, height, width, probability: float = ERASING_PROBABILITY,
                  area: tuple[float, float] = ERASING_AREA, aspect: tuple[float, float] = ERASING_ASPECT,
                  attempts: int = ERASING_ATTEMPTS) -> tuple[tf.Tensor, ...]:
    """The rectangles random erasing wipes out of `count` images: (apply, top, left, box_height, box_width), each
    of shape (count,), int32 but `apply` (bool).

    Zhong et al. 2017, Algorithm 1: with probability `probability`, draw an area S_e = U(area) * H * W and an
    aspect ratio r_e = U(aspect), H_e = sqrt(S_e r_e), W_e = sqrt(S_e / r_e), until the box fits (at most `attempts`
    draws, vectorised here; no erasing if none fits). Like the authors' released code, the corner is then drawn
    uniformly among the positions where the box fits (Algorithm 1 as printed draws it first and rejects boxes that
    overflow, which favours small boxes).
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    target = tf.random.stateless_uniform([count, attempts], seeds[0], area[0], area[1]) * h * w
    ratio = tf.random.stateless_uniform([count, attempts], seeds[1], aspect[0], aspect[1])
    box_h = tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32)
    box_w = tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32)
    fits = (box_h < height) & (box_w < width) & (box_h > 0) & (box_w > 0)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    box_h = tf.gather(box_h, first, batch_dims=1)
    box_w = tf.gather(box_w, first, batch_dims=1)
    apply = (tf.random.stateless_uniform([count], seeds[2]) < probability) & tf.reduce_any(fits, axis=1)
    top = tf.cast(tf.random.stateless_uniform([count], seeds[3]) * tf.cast(height - box_h + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.stateless_uniform([count], seeds[4]) * tf.cast(width - box_w + 1, tf.float32), tf.int32)
    return apply, top, left, box_h, box_w


def random_erasing(images: tf.Tensor, seed: tf.Tensor, probability: float = ERASING_PROBABILITY,
                   area: tuple[float, float] = ERASING_AREA, aspect: tuple[float, float] = ERASING_ASPECT,
                   fill: str = "random") -> tf.Tensor:
    """Random erasing (Zhong et al. 2017) of images (N, H, W, C) in [0, 255]; boxes from `erasing_boxes`.

    fill: "random" gives each erased value U(0, 255) (the paper's RE-R), "mean" the ImageNet mean pixel (RE-M,
    the authors' code default; it becomes 0 after ImageNet normalisation).
    """
    if fill not in ("random", "mean"):
        raise ValueError(f"fill must be 'random' or 'mean', got {fill!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    box_seed, fill_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    apply, top, left, box_h, box_w = erasing_boxes(box_seed, shape[0], shape[1], shape[2], probability, area,
                                                   aspect)
    rows = tf.range(shape[1])[None, :, None]
    cols = tf.range(shape[2])[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None]) &
              (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None]) & apply[:, None, None])
    if fill == "random":
        values = tf.random.stateless_uniform(shape, fill_seed, 0.0, 255.0)
    else:
        values = tf.broadcast_to(tf.constant(IMAGENET_MEAN_PIXEL, tf.float32)[: images.shape[-1]], shape)
    return _select(inside[..., None], values, images)


def augment(images: tf.Tensor, seed: tf.Tensor, *, flip: bool = False, rotation: bool = False,
            erasing: bool = False, erasing_fill: str = "random") -> tf.Tensor:
    """Flip, then rotate, then erase images (N, H, W, C) (each if asked), with independent seeds split from `seed`."""
    flip_seed, rotation_seed, erasing_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if flip:
        images = random_flip(images, flip_seed)
    if rotation:
        images = random_rotation(images, rotation_seed)
    if erasing:
        images = random_erasing(images, erasing_seed, fill=erasing_fill)
    return images
