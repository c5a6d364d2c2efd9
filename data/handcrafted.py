"""A non-learned re-ID feature: colour histograms over horizontal stripes (the demo's baseline).

Not from either paper: it is the reference point the learned models are compared with on the synthetic dataset
(the `experiments.demo` job). Horizontal stripes keep the coarse vertical layout of a person (head, torso, legs)
while ignoring horizontal position, in the spirit of the stripe colour histograms of ELF (Gray & Tao, ECCV 2008).

`stripe_histograms`: per stripe and per channel of HSV and RGB, a `bins`-bin histogram in which each pixel counts
with a Gaussian weight of its horizontal distance to the image centre (the person stands in the middle of a
detection box, the background fills its sides), normalised to sum 1; the concatenation is square-rooted (so that
Euclidean distance behaves like the Hellinger distance between histograms, less dominated by the largest bins) and
L2-normalised.

`center_per_camera`: colour histograms are dominated by what a camera adds to every image (background, colour
cast, illumination), so the nearest neighbours of an image are otherwise other people in the same camera. Removing
each camera's mean feature, computed over the unlabelled query and gallery images together (camera ids are known
at test time in every re-ID benchmark), is a transductive normalisation that uses no identity label.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from data import pipeline
from engine.progress import Progress

# Value range of each 8-bit channel in the order histograms are concatenated: OpenCV's hue spans 0..179.
_CHANNEL_RANGES = np.array([180, 256, 256, 256, 256, 256])  # H, S, V, R, G, B


def feature_dim(num_stripes: int = 6, bins: int = 8) -> int:
    """Length of the vector `stripe_histograms` returns."""
    return num_stripes * len(_CHANNEL_RANGES) * bins


def stripe_histograms(image_bgr: np.ndarray, num_stripes: int = 6, bins: int = 8, center_sigma: float | None = 0.15,
                      image_size: tuple[int, int] | None = (128, 64)) -> np.ndarray:
    """The float32 feature of one 8-bit BGR image (OpenCV's channel order).

    Args:
      image_bgr: (height, width, 3) uint8.
      num_stripes: horizontal stripes of equal height.
      bins: histogram bins per channel (1..180).
      center_sigma: standard deviation of the horizontal pixel weights as a fraction of the width; None weighs
        every pixel equally.
      image_size: (height, width) the image is resized to first, so that images of any size compare; None keeps
        the image as it is.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit 3-channel image, got shape {image_bgr.shape} dtype {image_bgr.dtype}")
    if num_stripes < 1 or not 1 <= bins <= 180:
        raise ValueError(f"num_stripes must be >= 1 and bins in 1..180, got {num_stripes} and {bins}")
    if center_sigma is not None and center_sigma <= 0:
        raise ValueError(f"center_sigma must be positive or None, got {center_sigma}")
    if image_size is not None:
        image_bgr = cv2.resize(image_bgr, (image_size[1], image_size[0]), interpolation=cv2.INTER_AREA)
    height, width = image_bgr.shape[:2]
    if height < num_stripes:
        raise ValueError(f"image height {height} is smaller than num_stripes={num_stripes}")
    channels = np.concatenate([cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV), image_bgr[:, :, ::-1]], axis=2)
    level = channels.astype(np.int64) * bins // _CHANNEL_RANGES
    stripe = (np.arange(height) * num_stripes // height)[:, None, None]
    cell = (stripe * len(_CHANNEL_RANGES) + np.arange(len(_CHANNEL_RANGES))) * bins + level
    weight = np.ones(width)
    if center_sigma is not None:
        weight = np.exp(-0.5 * ((np.arange(width) - (width - 1) / 2) / (center_sigma * width)) ** 2)
    hist = np.bincount(cell.ravel(), weights=np.broadcast_to(weight[None, :, None], cell.shape).ravel(),
                       minlength=feature_dim(num_stripes, bins)).reshape(num_stripes, len(_CHANNEL_RANGES), bins)
    feature = np.sqrt(hist / hist.sum(axis=2, keepdims=True)).ravel()
    return (feature / np.linalg.norm(feature)).astype(np.float32)


def histogram_features(paths: Sequence[str], num_stripes: int = 6, bins: int = 8, center_sigma: float | None = 0.15,
                       image_size: tuple[int, int] | None = (128, 64), progress: bool = False) -> np.ndarray:
    """`stripe_histograms` of the image files at `paths`, as a (len(paths), feature_dim) float32 array.

    Raises:
      DatasetError naming the file when an image cannot be read or decoded (`data.pipeline.read_image`, strict).
    """
    features = np.empty((len(paths), feature_dim(num_stripes, bins)), dtype=np.float32)
    bar = Progress(len(paths), unit="image") if progress else None
    for i, path in enumerate(paths):
        # the pipeline's decoder: the same pixels as training sees, and a partly corrupt JPEG is an error
        features[i] = stripe_histograms(pipeline.read_image(path)[:, :, ::-1], num_stripes, bins, center_sigma,
                                        image_size)
        if bar is not None:
            bar.update(i + 1)
    return features


def center_per_camera(features: np.ndarray, camids) -> np.ndarray:
    """`features` minus the mean feature of their camera, L2-normalised again (see the module docstring)."""
    features = np.asarray(features, dtype=np.float32)
    camids = np.asarray(camids)
    if camids.shape != (len(features),):
        raise ValueError(f"camids must hold one camera per feature row: shape {camids.shape}, "
                         f"{len(features)} rows")
    cameras, index = np.unique(camids, return_inverse=True)
    sums = np.zeros((len(cameras), features.shape[1]), dtype=np.float64)
    np.add.at(sums, index, features)
    centered = features - (sums / np.bincount(index)[:, None])[index].astype(np.float32)
    return centered / np.maximum(np.linalg.norm(centered, axis=1, keepdims=True), 1e-12)
