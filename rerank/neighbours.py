"""Input checks and the one chunked pass over all embeddings that every re-ranker starts from.

Every classic re-ranker (and ACP's Eq. 1) looks at the nearest neighbours of each of the N = Q + G query and
gallery embeddings among all N. `nearest` finds them with `rerank.knn.knn`'s one pass over row chunks, each a
distance block (matmul on the active Keras backend, a GPU when one is visible) reduced on the device to its top-k
and, when asked, its row maxima (which k-reciprocal and SCA divide by), so memory stays O(chunk_size x N + N x k)
and no block makes a round trip through NumPy.
`neighbour_matrix` turns neighbour lists into the sparse N x N operators (weights, local query expansion) the
methods are written with; nothing dense and N x N is ever built.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.progress import Progress
from rerank.knn import knn

DEFAULT_CHUNK_SIZE = 512  # rows per distance chunk: 512 x 100K float32 = 200 MB
_CHECK_ROWS = 8192
_PAIR_CHUNK = 16384


def _finite(x: np.ndarray, name: str) -> None:
    for start in range(0, len(x), _CHECK_ROWS):
        bad = ~np.isfinite(x[start:start + _CHECK_ROWS]).all(axis=1)
        if bad.any():
            raise ValueError(f"{name} row {start + int(np.argmax(bad))} has a non-finite value (NaN or inf)")


def check_features(query, gallery) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery embeddings as float32 (n, d) arrays of one width, non-empty and finite.

    Raises ValueError naming the array (and the first bad row) otherwise.
    """
    arrays = []
    for name, x in (("query", query), ("gallery", gallery)):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} embeddings must be a non-empty 2-D (rows, width) array, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{name} embeddings must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        _finite(x, name)
        arrays.append(x)
    query, gallery = arrays
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query embeddings have width {query.shape[1]} but gallery embeddings have width "
                         f"{gallery.shape[1]}")
    return query, gallery


def check_count(name: str, value, low: int, high: int, what: str) -> int:
    """`value` as an int in [low, high]; otherwise a ValueError naming the parameter and the bound (`what`)."""
    if isinstance(value, (bool, np.bool_)) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range: it must be between {low} and {high} ({what})")
    return value


def check_fraction(name: str, value) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} must be between 0 and 1")
    return value


def stack(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Queries first, then the gallery: the row order of every N x N neighbour structure here."""
    return np.concatenate([query, gallery], axis=0)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (rows of zeros stay zero), float32."""
    out = np.empty_like(x, dtype=np.float32)
    for start in range(0, len(x), _CHECK_ROWS):
        rows = x[start:start + _CHECK_ROWS]
        out[start:start + _CHECK_ROWS] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return out


def progress(total: int, verbose: int, unit: str) -> Progress:
    """A Keras progress bar over `total` rows, silent when `verbose` is 0."""
    return Progress(total, unit=unit, enabled=bool(verbose))


def nearest(features: np.ndarray, k: int, metric: str, chunk_size: int = DEFAULT_CHUNK_SIZE,
            with_row_max: bool = False, verbose: int = 0):
    """The k nearest rows of `features` to each row of `features` (itself included), nearest first.

    Returns (distances float32 (N, k), indices int64 (N, k), row_max float32 (N,) or None): `rerank.knn.knn` of
    the set against itself, so ties go to the lower index. `row_max[i]` is the largest distance from row i to any
    row: the column maximum of the full matrix that k-reciprocal and SCA normalise by, gathered in the same pass.
    """
    found = knn(features, features, k, metric, chunk_size, with_row_max, verbose)
    return found if with_row_max else (*found, None)


def probe_first(indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Neighbour lists with each row's own index moved to column 0, the others kept in order.

    A kNN list normally starts with the row itself (distance 0), but exact duplicates can tie with it and be
    ranked first. Where the row is missing altogether (more duplicates than columns), it is put first and the
    last neighbour dropped.
    """
    indices = np.asarray(indices)
    is_self = indices == rows[:, None]
    order = np.argsort(~is_self, axis=1, kind="stable")
    out = np.take_along_axis(indices, order, axis=1)
    missing = ~is_self.any(axis=1)
    if missing.any():
        out[missing] = np.concatenate([rows[missing, None], indices[missing, :-1]], axis=1)
    return out


def pair_sqdistances(features: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between features[rows[p]] and features[cols[p]], float32.

    Same formula as `rerank.knn` (|a|^2 + |b|^2 - 2 a.b, clamped at 0), so a pair also found by `nearest`
    gets the same value up to float32 rounding.
    """
    from keras import ops  # here, not at import: see rerank.knn

    x = ops.convert_to_tensor(features)
    sqnorm = ops.sum(x * x, axis=1)
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), _PAIR_CHUNK):
        # int32 indices: JAX (64-bit types off by default) would narrow int64 with a warning at every chunk.
        r = ops.convert_to_tensor(np.asarray(rows[start:start + _PAIR_CHUNK], dtype=np.int32))
        c = ops.convert_to_tensor(np.asarray(cols[start:start + _PAIR_CHUNK], dtype=np.int32))
        dot = ops.sum(ops.take(x, r, axis=0) * ops.take(x, c, axis=0), axis=1)
        out[start:start + _PAIR_CHUNK] = ops.convert_to_numpy(
            ops.maximum(ops.take(sqnorm, r, axis=0) + ops.take(sqnorm, c, axis=0) - 2.0 * dot, 0.0))
    return out


def neighbour_matrix(indices: np.ndarray, weights, num_cols: int) -> sp.csr_matrix:
    """Sparse (len(indices), num_cols) matrix with weights[i, j] at column indices[i, j] (repeats add up).

    With row-normalised weights, `neighbour_matrix(idx[:, :k2], 1 / k2) @ V` is the local query expansion of
    k-reciprocal / SCA: each row replaced by the mean of its k2 nearest rows.
    """
    indices = np.asarray(indices)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), indices.shape)
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    return sp.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(len(indices), num_cols))


def normalize_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows of a sparse matrix scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix
