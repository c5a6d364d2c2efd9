"""Distances and k-nearest neighbours in chunks: nothing quadratic in memory.

Rows of the left operand are processed `chunk_size` at a time with one matmul and one top-k per chunk, so a
100K x 100K problem needs O(chunk_size x N) memory. TensorFlow runs the matmul and top-k, on a GPU when one is
visible; inputs and outputs are numpy arrays.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from engine.progress import Progress

METRICS = ("euclidean", "sqeuclidean", "cosine")


def _check(a: np.ndarray, b: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    same = a is b  # a kNN of a set against itself: convert and normalise one copy, not two (800 MB at 100K x 2048)
    a = np.asarray(a, dtype=np.float32)
    b = a if same else np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be 2-D with equal widths, got shapes {a.shape} and {b.shape}")
    if metric == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = a if same else b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a, b


def _distance_block(a: tf.Tensor, b: tf.Tensor, b_sqnorm: tf.Tensor, metric: str) -> tf.Tensor:
    dot = tf.matmul(a, b, transpose_b=True)
    if metric == "cosine":
        return 1.0 - dot
    sq = tf.reduce_sum(a * a, axis=1, keepdims=True) + b_sqnorm[None, :] - 2.0 * dot
    sq = tf.maximum(sq, 0.0)
    return tf.sqrt(sq) if metric == "euclidean" else sq


def iter_distance_chunks(a: np.ndarray, b: np.ndarray, metric: str = "euclidean",
                         chunk_size: int = 1024) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, distances of a[start:stop] to all of b) as float32 arrays of shape (stop-start, len(b))."""
    a, b = _check(a, b, metric)
    b_t = tf.constant(b)
    b_sqnorm = tf.reduce_sum(b_t * b_t, axis=1)
    for start in range(0, len(a), chunk_size):
        stop = min(start + chunk_size, len(a))
        yield start, stop, _distance_block(tf.constant(a[start:stop]), b_t, b_sqnorm, metric).numpy()


def pairwise_distance(a: np.ndarray, b: np.ndarray, metric: str = "euclidean", chunk_size: int = 1024) -> np.ndarray:
    """The dense len(a) x len(b) distance matrix, built chunk by chunk (only call it where the output fits)."""
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start, stop, block in iter_distance_chunks(a, b, metric, chunk_size):
        out[start:stop] = block
    return out


def knn(query: np.ndarray, reference: np.ndarray, k: int, metric: str = "euclidean", chunk_size: int = 1024,
        with_row_max: bool = False, verbose: int = 0) -> tuple[np.ndarray, ...]:
    """The k nearest rows of `reference` for every row of `query`, nearest first.

    Returns (distances float32 (n, k), indices int64 (n, k)), plus row_max float32 (n,) with `with_row_max`: the
    largest distance from each query row to any reference row, gathered in the same pass (k-reciprocal and SCA
    normalise by it). A query row that is also in `reference` finds itself at distance ~0. Ties are broken by
    top-k's order (lower index first). `verbose` shows a progress bar over query rows.
    """
    query, reference = _check(query, reference, metric)
    if not 1 <= k <= len(reference):
        raise ValueError(f"k={k} must be between 1 and the number of reference rows ({len(reference)})")
    ref_t = tf.constant(reference)
    ref_sqnorm = tf.reduce_sum(ref_t * ref_t, axis=1)
    dists = np.empty((len(query), k), dtype=np.float32)
    idx = np.empty((len(query), k), dtype=np.int64)
    row_max = np.empty(len(query), dtype=np.float32) if with_row_max else None
    bar = Progress(len(query), unit="neighbour rows", enabled=bool(verbose))
    for start in range(0, len(query), chunk_size):
        stop = min(start + chunk_size, len(query))
        block = _distance_block(tf.constant(query[start:stop]), ref_t, ref_sqnorm, metric)
        if with_row_max:
            row_max[start:stop] = tf.reduce_max(block, axis=1).numpy()
        neg, top = tf.math.top_k(-block, k=k, sorted=True)
        dists[start:stop] = -neg.numpy()
        idx[start:stop] = top.numpy()
        bar.update(stop)
    return (dists, idx, row_max) if with_row_max else (dists, idx)
