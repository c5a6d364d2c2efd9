"""Average query expansion (AQE, Chum et al. ICCV 2007) and alpha query expansion (alpha-QE, Radenovic et al.).

As in the ACP paper's comparison (Sec. IV-C1: "expand all the feature embeddings by considering the query and
gallery sets as a whole"), every query AND gallery embedding is expanded over its k nearest neighbours among all
Q + G embeddings, itself included, with Eq. 1 of ACP (`expand_embeddings`):

    alpha-QE: f* = sum_j max(cos(f, f_j), 0)^alpha f_j        AQE: alpha = 0, i.e. the mean of the k neighbours

Choices of ours (documented for WORKSPACE.md):
- Embeddings are L2-normalised first (similarities are cosines, as alpha-QE defines them and as FastReID's
  `aqe` computes them) and the expanded embeddings are L2-normalised again, so the scale of the weights does not
  matter; the re-ranked distance is the Euclidean distance between expanded unit vectors (ranks like cosine).
- Negative cosines are clipped to 0 before the power, so a non-integer alpha stays defined; the k nearest
  neighbours of a real embedding have positive cosines, so this changes nothing in practice.
"""
from __future__ import annotations

import numpy as np

from acp.rerank.distances import RerankedDistances
from acp.rerank.expansion import expand_embeddings
from acp.rerank.neighbours import (DEFAULT_CHUNK_SIZE, check_count, check_features, l2_normalize, nearest,
                                   stack)


def expanded_embeddings(query, gallery, k: int = 10, alpha: float = 3.0, chunk_size: int = DEFAULT_CHUNK_SIZE,
                        verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The alpha-QE expanded, L2-normalised (query, gallery) embeddings (alpha = 0 gives AQE)."""
    query, gallery = check_features(query, gallery)
    everything = l2_normalize(stack(query, gallery))
    k = check_count("k", k, 1, len(everything), "neighbours among the query + gallery embeddings")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha={alpha} must be a finite number >= 0")
    cosine_distance, idx, _ = nearest(everything, k, "cosine", chunk_size, verbose=verbose)
    weights = np.power(np.maximum(1.0 - cosine_distance, 0.0), alpha)
    expanded = l2_normalize(expand_embeddings(everything, idx, weights, chunk_size))
    return expanded[:len(query)], expanded[len(query):]


def alpha_qe(query, gallery, k: int = 10, alpha: float = 3.0, chunk_size: int = DEFAULT_CHUNK_SIZE,
             verbose: int = 0) -> RerankedDistances:
    """alpha-QE re-ranking: Euclidean distances between the expanded query and gallery embeddings.

    Args:
      query, gallery: (Q, d) and (G, d) embeddings.
      k: neighbours combined, the embedding itself included (the ACP paper uses N/C, Table IV).
      alpha: exponent of the cosine weights (3 in the ACP paper).
      chunk_size: rows per chunk of the neighbour search and of the expansion.
    """
    return RerankedDistances(*expanded_embeddings(query, gallery, k, alpha, chunk_size, verbose), "euclidean")


def aqe(query, gallery, k: int = 10, chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> RerankedDistances:
    """AQE re-ranking: every embedding replaced by the mean of its k nearest embeddings (itself included)."""
    return alpha_qe(query, gallery, k=k, alpha=0.0, chunk_size=chunk_size, verbose=verbose)
