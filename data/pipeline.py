"""tf.data input pipelines from a list of `Sample`s: decode, resize, augment, normalise, batch.

Image sizes and normalisations (PRESETS):
  "kvmmn":  224 x 112 (KVM-MN, "Training the Network"), TF-slim Inception preprocessing: x / 127.5 - 1, in [-1, 1].
  "resnet": 256 x 128 (the FastReID strong baseline behind ACP), ImageNet mean / std of [0, 1] RGB.
Images are decoded and resized one by one in a parallel map, then batched; augmentation (`data.augment`) and
normalisation run on whole batches of resized images in [0, 255].

A corrupt or unreadable image is an error naming the file: decoding runs in Python (OpenCV, and simplejpeg for
the strict decoding of JPEGs, inside `tf.py_function`) where the path is known, and its exception text travels with
the `tf.errors.OpError` that iteration raises. Strict decoding (the default; `set_strict_decoding` or the binaries'
--nostrict_decoding turn it off) rejects a JPEG that libjpeg decodes only with a warning (corrupt scan data; see
`read_image`). Decoding costs about 0.15 ms
per 128 x 64 JPEG with either decoder (measured on the 2-core development machine); resizing and augmentation are
graph ops in the parallel map, so the pipeline keeps both cores busy.
"""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
import simplejpeg
import tensorflow as tf

from data import augment
from data.record import DatasetError, Sample

PRESETS = {"kvmmn": ((224, 112), "inception"), "resnet": ((256, 128), "imagenet")}
NORMALIZATIONS = ("inception", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JPEG_SIGNATURE = b"\xff\xd8\xff"


_DECODING = {"strict": True}  # what `strict` / `strict_decoding` left as None mean (`set_strict_decoding`)


def set_strict_decoding(strict: bool) -> None:
    """Set what a `strict` / `strict_decoding` argument left as None means, for this process (True unless set):
    the binaries' --strict_decoding flag, which reaches every image their libraries read without each library
    passing it along."""
    _DECODING["strict"] = bool(strict)


def _strict(strict: bool | None) -> bool:
    return _DECODING["strict"] if strict is None else bool(strict)


def read_image(path: str, strict: bool | None = None) -> np.ndarray:
    """The RGB uint8 pixels (H, W, 3) of the image file at `path`; a DatasetError naming `path` if unreadable.

    `strict`: a JPEG whose data libjpeg can only partly decode (corrupt or missing scan data, which it reports as a
    warning such as "Corrupt JPEG data: 222 extraneous bytes before marker 0xd9" and then decodes into grey or
    shifted blocks) is an error too. OpenCV prints such warnings and returns the damaged pixels, so strict decoding
    of JPEGs goes through simplejpeg (the same libjpeg-turbo, with warnings raised as errors; its pixels equal
    OpenCV's, tests/test_pipeline.py). `strict=False` accepts whatever the decoder recovers; None: the process's
    setting (`set_strict_decoding`, default strict).
    """
    strict = _strict(strict)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read image: {error.strerror or error}") from None
    if strict and data[:3].tobytes() == JPEG_SIGNATURE:
        try:
            colorspace = simplejpeg.decode_jpeg_header(data)[2]
            # libjpeg converts only luminance-chrominance and grey JPEGs to RGB; a CMYK one is checked as CMYK
            # and converted by OpenCV below
            if colorspace not in ("CMYK", "YCCK"):
                return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
            simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True)
        except ValueError as error:
            raise DatasetError(f"{path}: corrupt JPEG ({error}); strict_decoding=False accepts what the decoder "
                               "recovers") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt, empty or not an image)")
    return image[:, :, ::-1]


def decode(path: tf.Tensor, strict: bool | None = None) -> tf.Tensor:
    """Graph op: the RGB uint8 image (H, W, 3) at the scalar string `path` (the file system's bytes of the path, as
    `os.fsencode` gives them), via `read_image(path, strict)` (None: the process's setting when the op is built)."""
    strict = _strict(strict)
    image = tf.py_function(lambda p: read_image(os.fsdecode(p.numpy()), strict), [path], tf.uint8)
    image.set_shape([None, None, 3])
    return image


def normalize(images: tf.Tensor, normalization: str) -> tf.Tensor:
    """Map pixel values in [0, 255] to the network's input range (one of NORMALIZATIONS)."""
    images = tf.cast(images, tf.float32)
    if normalization == "inception":
        return images / 127.5 - 1.0
    if normalization == "imagenet":
        return (images / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _check_size(image_size) -> tuple[int, int]:
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (height, width) with positive entries, got {image_size!r}")
    return size


def resize(image: tf.Tensor, image_size=(224, 112)) -> tf.Tensor:
    """A decoded image resized to `image_size` (bilinear, antialiased when shrinking), float32 in [0, 255]."""
    return tf.image.resize(tf.cast(image, tf.float32), _check_size(image_size), antialias=True)


def augment_and_normalize(images: tf.Tensor, normalization: str = "inception", seed: tf.Tensor | None = None, *,
                          flip: bool = False, random_rotation: bool = False, random_erasing: bool = False,
                          erasing_fill: str = "random") -> tf.Tensor:
    """Augment a batch of resized images (N, H, W, 3) in [0, 255] (needs a stateless `seed`), then normalise."""
    if flip or random_rotation or random_erasing:
        if seed is None:
            raise ValueError("augmentation needs a seed")
        images = augment.augment(images, seed, flip=flip, rotation=random_rotation, erasing=random_erasing,
                                 erasing_fill=erasing_fill)
    return normalize(tf.clip_by_value(images, 0.0, 255.0), normalization)


def load_image(path: str, image_size=(224, 112), normalization: str = "inception",
               strict_decoding: bool | None = None) -> tf.Tensor:
    """One image, resized and normalised, float32 (H, W, 3); a DatasetError naming `path` if unreadable (or, with
    `strict_decoding`, a partly corrupt JPEG: `read_image`)."""
    return normalize(resize(read_image(path, strict_decoding), image_size), normalization)


def make_dataset(samples: Sequence[Sample], *, image_size=(224, 112), normalization: str = "inception",
                 batch_size: int = 32, training: bool = False, shuffle: bool = False, repeat: bool = False,
                 seed: int = 0, random_erasing: bool = False, random_rotation: bool = False, flip: bool = False,
                 erasing_fill: str = "random", strict_decoding: bool | None = None) -> tf.data.Dataset:
    """A dataset of batches (images float32 NHWC, pids int32, camids int32) in the order of `samples`.

    Args:
      samples: `Sample`s (path, pid, camid), e.g. `record.train`.
      image_size: (height, width); PRESETS holds the papers' sizes.
      normalization: "inception" ([-1, 1]) or "imagenet" (mean / std).
      batch_size: images per batch.
      training: drop the last incomplete batch, so that every step sees `batch_size` images (fixed shapes for
        tf.distribute).
      shuffle: shuffle all samples, anew each epoch (seeded).
      repeat: repeat forever.
      seed: seeds shuffling and augmentation; the same seed gives the same batches.
      random_erasing, random_rotation, flip: the augmentation of `data.augment`.
      erasing_fill: "random" (Zhong et al.'s RE-R) or "mean".
      strict_decoding: a partly corrupt JPEG (libjpeg warnings) is an error naming the file; False decodes what
        libjpeg recovers (`read_image`); None: the process's setting (`set_strict_decoding`, default True).
    """
    if not samples:
        raise ValueError("make_dataset needs at least one sample")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if training and not repeat and len(samples) < batch_size:
        raise ValueError(f"training batches of {batch_size} from {len(samples)} samples without repeat: no batch")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    image_size = _check_size(image_size)
    # bytes, not str: a path that is not UTF-8 (Python holds its bytes as surrogates) cannot become a str tensor
    paths = tf.constant([os.fsencode(s[0]) for s in samples])
    pids = tf.constant([s[1] for s in samples], tf.int32)
    camids = tf.constant([s[2] for s in samples], tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((paths, pids, camids))
    if shuffle:
        dataset = dataset.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(lambda path, pid, camid: (resize(decode(path, strict_decoding), image_size), pid, camid),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    # One stateless seed per batch, drawn after shuffle and repeat: every epoch augments differently, and the
    # result does not depend on how many map calls run in parallel.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    augmentation = dict(flip=flip, random_rotation=random_rotation, random_erasing=random_erasing,
                        erasing_fill=erasing_fill)

    def finish(batch, batch_seed):
        images, batch_pids, batch_camids = batch
        return augment_and_normalize(images, normalization, batch_seed, **augmentation), batch_pids, batch_camids

    dataset = tf.data.Dataset.zip((dataset, seeds)).map(finish, num_parallel_calls=tf.data.AUTOTUNE,
                                                         deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
