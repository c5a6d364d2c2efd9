"""Distances and k-nearest neighbours in chunks: nothing quadratic in memory.

Rows of the left operand are processed `chunk_size` at a time with one matmul and one top-k per chunk, so a
100K x 100K problem needs O(chunk_size x N) memory. The active Keras backend (TensorFlow, JAX or PyTorch, see
`engine.backend`) runs the matmul and top-k with `keras.ops`, on a GPU when one is visible; inputs and outputs are
numpy arrays.

Ties: every backend returns equal distances lower index first (`smallest_k`), so neighbour lists, and the
re-rankers built on them, are the same on all three.

Keras is imported inside the functions that compute, not with the module: on the TensorFlow backend importing
keras loads TensorFlow (seconds), which importing the re-rankers, their registry or their evaluation must not do.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

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


def distance_block(a, b, b_sqnorm, metric: str):
    from keras import ops

    # einsum, not matmul(a, transpose(b)): eager JAX and TensorFlow would copy the transposed (N, d) reference
    # for every chunk; each backend's einsum contracts over d in place.
    dot = ops.einsum("id,jd->ij", a, b)
    if metric == "cosine":
        return 1.0 - dot
    sq = ops.sum(a * a, axis=1, keepdims=True) + b_sqnorm[None, :] - 2.0 * dot
    sq = ops.maximum(sq, 0.0)
    return ops.sqrt(sq) if metric == "euclidean" else sq


def _on_device(b: np.ndarray):
    """The right operand and its squared row norms as backend tensors, copied to the device once."""
    from keras import ops

    b = ops.convert_to_tensor(b)
    return b, ops.sum(b * b, axis=1)


def iter_distance_chunks(a: np.ndarray, b: np.ndarray, metric: str = "euclidean",
                         chunk_size: int = 1024) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, distances of a[start:stop] to all of b) as float32 arrays of shape (stop-start, len(b))."""
    from keras import ops

    a, b = _check(a, b, metric)
    b, b_sqnorm = _on_device(b)
    for start in range(0, len(a), chunk_size):
        stop = min(start + chunk_size, len(a))
        block = distance_block(ops.convert_to_tensor(a[start:stop]), b, b_sqnorm, metric)
        yield start, stop, ops.convert_to_numpy(block)


def smallest_k(x, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest values of each row of `x` (a tensor or array, (n, m)) and their column indices, smallest
    first, equal values lower index first: (values float32 (n, k), indices int64 (n, k)).

    TensorFlow's and JAX's top-k already order ties so; PyTorch's promises nothing (on the CPU it returns equal
    values in any order, and not necessarily the lowest-indexed ones), so there the k columns are picked exactly:
    those below the k-th smallest value, then the lowest-indexed ones equal to it, ordered by a stable sort.
    """
    import keras
    from keras import ops

    x = ops.convert_to_tensor(x)
    neg, top = ops.top_k(-x, k=k, sorted=True)
    if keras.backend.backend() != "torch":
        return -ops.convert_to_numpy(neg), ops.convert_to_numpy(top).astype(np.int64)
    kth = -neg[:, k - 1:k]
    below = x < kth
    tied = x == kth
    take_tied = tied & (ops.cumsum(ops.cast(tied, "int32"), axis=1)
                        <= k - ops.sum(ops.cast(below, "int32"), axis=1, keepdims=True))
    # The chosen columns carry distinct keys m - j and the others 0, so one more top-k lists exactly the k chosen
    # columns, lowest index first; a stable sort by value on the (n, k) result then keeps ties in index order.
    keys = ops.where(below | take_tied, x.shape[1] - ops.arange(x.shape[1], dtype="int32")[None, :], 0)
    _, chosen = ops.top_k(keys, k=k, sorted=True)
    values = ops.convert_to_numpy(ops.take_along_axis(x, chosen, axis=1))
    order = np.argsort(values, axis=1, kind="stable")
    return (np.take_along_axis(values, order, axis=1),
            np.take_along_axis(ops.convert_to_numpy(chosen).astype(np.int64), order, axis=1))


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
    dists = np.empty((len(query), k), dtype=np.float32)
    idx = np.empty((len(query), k), dtype=np.int64)
    row_max = np.empty(len(query), dtype=np.float32) if with_row_max else None
    bar = Progress(len(query), unit="neighbour rows", enabled=bool(verbose))
    for start, stop, block_dists, block_idx, block_max in iter_knn_chunks(query, reference, k, metric, chunk_size,
                                                                          with_row_max):
        dists[start:stop], idx[start:stop] = block_dists, block_idx
        if with_row_max:
            row_max[start:stop] = block_max
        bar.update(stop)
    return (dists, idx, row_max) if with_row_max else (dists, idx)


def iter_knn_chunks(query: np.ndarray, reference: np.ndarray, k: int, metric: str = "euclidean",
                    chunk_size: int = 1024, with_row_max: bool = False):
    """`knn` one chunk of query rows at a time: yields (start, stop, distances (n, k), indices (n, k), row_max
    (n,) or None), for callers that keep only part of each chunk's neighbours (memory O(chunk_size x N))."""
    from keras import ops

    query, reference = _check(query, reference, metric)
    if not 1 <= k <= len(reference):
        raise ValueError(f"k={k} must be between 1 and the number of reference rows ({len(reference)})")
    reference, ref_sqnorm = _on_device(reference)
    for start in range(0, len(query), chunk_size):
        stop = min(start + chunk_size, len(query))
        block = distance_block(ops.convert_to_tensor(query[start:stop]), reference, ref_sqnorm, metric)
        row_max = ops.convert_to_numpy(ops.max(block, axis=1)) if with_row_max else None
        yield start, stop, *smallest_k(block, k), row_max
