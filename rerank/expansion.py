"""Feature expansion, ACP Eq. 1: an embedding replaced by a weighted sum of its neighbours' embeddings.

    p* = sum_{j=1..k1} s_j f_j          (f_j: the k1 nearest neighbours of p, p itself included)

ACP predicts s with its network; AQE (s_j = 1/k) and alpha-QE (s_j = sim_j^alpha) are the same operation with
fixed weights, so all three call `expand_embeddings`.
"""
from __future__ import annotations

import numpy as np

DEFAULT_EXPANSION_CHUNK = 512  # rows per chunk: 512 x k x d gathered floats (k = 25, d = 2048: 105 MB)


def expand_embeddings(features, neighbour_idx, weights, chunk_size: int = DEFAULT_EXPANSION_CHUNK) -> np.ndarray:
    """Eq. 1 for every row of `neighbour_idx`: out[i] = sum_j weights[i, j] * features[neighbour_idx[i, j]].

    Args:
      features: (N, d) embeddings the neighbour indices point into.
      neighbour_idx: (M, k) integer indices into `features` (M may differ from N, e.g. queries only).
      weights: (M, k) weights s (not normalised here: ACP's s are independent sigmoid outputs).
      chunk_size: rows expanded at once; memory O(chunk_size x k x d). Runs on the active Keras backend (a GPU
        when one is visible).

    Returns:
      (M, d) float32 expanded embeddings.
    """
    from keras import ops  # here, not at import: see rerank.knn

    features = np.asarray(features, dtype=np.float32)
    neighbour_idx = np.asarray(neighbour_idx)
    weights = np.asarray(weights, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {features.shape}")
    if neighbour_idx.ndim != 2 or not np.issubdtype(neighbour_idx.dtype, np.integer):
        raise ValueError(f"neighbour_idx must be a 2-D integer array, got shape {neighbour_idx.shape} "
                         f"dtype {neighbour_idx.dtype}")
    if weights.shape != neighbour_idx.shape:
        raise ValueError(f"weights have shape {weights.shape} but neighbour_idx has shape {neighbour_idx.shape}")
    if neighbour_idx.size and (neighbour_idx.min() < 0 or neighbour_idx.max() >= len(features)):
        raise ValueError(f"neighbour_idx holds indices outside [0, {len(features)}): min {neighbour_idx.min()}, "
                         f"max {neighbour_idx.max()}")
    if not np.isfinite(weights).all():
        raise ValueError("weights contain a non-finite value")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    table = ops.convert_to_tensor(features)
    out = np.empty((len(neighbour_idx), features.shape[1]), dtype=np.float32)
    for start in range(0, len(neighbour_idx), chunk_size):
        stop = min(start + chunk_size, len(neighbour_idx))
        # int32 indices (the range is checked above): JAX would narrow int64 with a warning at every chunk.
        gathered = ops.take(table, ops.convert_to_tensor(neighbour_idx[start:stop].astype(np.int32)), axis=0)
        out[start:stop] = ops.convert_to_numpy(ops.einsum("nk,nkd->nd", ops.convert_to_tensor(weights[start:stop]),
                                                          gathered))
    return out
