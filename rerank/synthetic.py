"""Clustered synthetic embeddings shaped like a re-ID test set, for tests, benchmarks and demos of the re-rankers.

Identities come in look-alike groups (a group centre plus a per-identity offset), every image gets a camera whose
style offset is shared by all identities, and per-image noise on top. Same-camera images of an identity are
therefore closer than cross-camera ones (the Market-1501 protocol removes the former) and look-alike identities
are the hard negatives that re-ranking has to push away.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

_ROWS = 8192


class Embeddings(NamedTuple):
    query: np.ndarray
    gallery: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray


def clustered_embeddings(num_images: int, dim: int = 2048, images_per_identity: int = 10,
                         identities_per_group: int = 5, num_cameras: int = 6, separation: float = 0.6,
                         camera_spread: float = 0.4, noise: float = 3.0, seed: int = 0) -> Embeddings:
    """`num_images` float32 embeddings of width `dim`: the first image of each identity is a query, the rest gallery.

    Args:
      num_images: query + gallery size N (identities = N // images_per_identity, at least 1).
      dim: embedding width.
      images_per_identity: images per identity (N / C in the ACP paper's terms).
      identities_per_group: identities sharing a look-alike group centre.
      num_cameras: cameras; each image's camera is uniform.
      separation, camera_spread, noise: standard deviations (per dimension, group centres have 1) of the
        identity offsets, the camera styles and the image noise; larger noise / smaller separation = harder.
      seed: seed of everything drawn.
    """
    if num_images < 2 or dim < 1 or images_per_identity < 1 or identities_per_group < 1 or num_cameras < 1:
        raise ValueError(f"need num_images >= 2 and positive sizes, got num_images={num_images}, dim={dim}, "
                         f"images_per_identity={images_per_identity}, identities_per_group="
                         f"{identities_per_group}, num_cameras={num_cameras}")
    rng = np.random.default_rng(seed)
    num_ids = max(1, num_images // images_per_identity)
    num_groups = max(1, num_ids // identities_per_group)
    groups = rng.standard_normal((num_groups, dim), dtype=np.float32)
    centres = groups[rng.integers(0, num_groups, num_ids)]
    centres += np.float32(separation) * rng.standard_normal((num_ids, dim), dtype=np.float32)
    styles = np.float32(camera_spread) * rng.standard_normal((num_cameras, dim), dtype=np.float32)
    ids = np.sort(np.arange(num_images) % num_ids)
    cams = rng.integers(0, num_cameras, num_images)
    features = np.empty((num_images, dim), dtype=np.float32)
    for start in range(0, num_images, _ROWS):
        stop = min(start + _ROWS, num_images)
        features[start:stop] = centres[ids[start:stop]] + styles[cams[start:stop]]
        features[start:stop] += np.float32(noise) * rng.standard_normal((stop - start, dim), dtype=np.float32)
    is_query = np.zeros(num_images, dtype=bool)
    is_query[np.unique(ids, return_index=True)[1]] = True
    pids = ids + 1
    return Embeddings(features[is_query], features[~is_query], pids[is_query], pids[~is_query], cams[is_query],
                      cams[~is_query])
