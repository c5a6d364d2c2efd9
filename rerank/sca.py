"""Sparse Contextual Activation (SCA) re-ranking (Bai and Bai, "Sparse contextual activation for efficient visual
re-ranking", IEEE TIP 2016), following the authors' released SCA_demo.m, with sparse matrices.

Over all N = Q + G embeddings:
1. d(i, j) = distance divided by the row maximum max_j d(i, j); N_k(i) = the k nearest of i, itself included.
2. Contextual activation: F_i(j) = exp(-d(i, j)) for j in N_k1(i), 0 elsewhere, normalised to sum 1.
3. Local consistency enhancement (k2 > 1): F_i = sum of F_j over j in N_k2(i) (each row then sums to k2).
4. Generalised Jaccard distance: 1 - m / (2 k2 - m), m = sum_l min(F_pl, F_gl) (2 k2 - m = sum of maxima).

Choices of ours (for WORKSPACE.md):
- The demo takes "your input distance matrix"; we give it squared Euclidean distances, which makes step 2 the
  Gaussian kernel exp(-||x_i - x_j||^2 / sigma_i^2) the paper describes (sigma_i^2 = the row maximum), and is what
  k-reciprocal re-ranking (which adopted SCA's encoding) feeds it.
- A pair with no common activation has distance exactly 1 in SCA; with `fallback=True` (default) such pairs get
  1 + d(p, g) instead, i.e. they keep their original order behind every related pair
  (`distances.related_or_original`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rerank.distances import RerankedDistances, related_or_original
from rerank.neighbours import DEFAULT_CHUNK_SIZE, check_count, check_features, nearest, neighbour_matrix, stack
from rerank.overlap import min_overlap


class SCADistances(RerankedDistances):
    """Jaccard distances between sparse contextual activations, blocks of query rows at a time."""

    def __init__(self, query, gallery, query_f: sp.csr_matrix, gallery_f_by_column: sp.csr_matrix,
                 query_row_max: np.ndarray, k2: int, fallback: bool):
        super().__init__(query, gallery, "sqeuclidean")
        self.query_f, self.gallery_f_by_column = query_f, gallery_f_by_column
        self.query_row_max, self.k2, self.fallback = query_row_max, k2, fallback

    def _rerank(self, start, stop, original):
        overlap = min_overlap(self.query_f[start:stop], self.gallery_f_by_column)
        jaccard = 1.0 - overlap / (2.0 * self.k2 - overlap)
        return related_or_original(jaccard, overlap > 0, original / self.query_row_max[start:stop, None],
                                   self.fallback)


def sca(query, gallery, k1: int = 20, k2: int = 6, fallback: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE,
        verbose: int = 0) -> SCADistances:
    """SCA re-ranking of query x gallery (see the module docstring).

    Args:
      query, gallery: (Q, d) and (G, d) embeddings.
      k1: size of the contextual activation (first-order neighbourhood, itself included); the ACP paper sets
        the first-order neighbourhood of every method to N/C.
      k2: local consistency enhancement size (1 turns it off).
      fallback: order pairs without common activation by their original distance (see above).
      chunk_size: rows per chunk of the neighbour pass.
    """
    query, gallery = check_features(query, gallery)
    everything = stack(query, gallery)
    n = len(everything)
    k1 = check_count("k1", k1, 1, n, f"at most the {n} query + gallery embeddings")
    k2 = check_count("k2", k2, 1, n, f"at most the {n} query + gallery embeddings")
    distances, indices, row_max = nearest(everything, max(k1, k2), "sqeuclidean", chunk_size, with_row_max=True,
                                          verbose=verbose)
    row_max = np.maximum(row_max, np.finfo(np.float32).tiny)
    weights = np.exp(-distances[:, :k1].astype(np.float64) / row_max[:, None])
    f = neighbour_matrix(indices[:, :k1], weights / weights.sum(axis=1, keepdims=True), n)
    if k2 != 1:
        f = neighbour_matrix(indices[:, :k2], 1.0, n) @ f
    f = f.astype(np.float32)
    num_query = len(query)
    return SCADistances(query, gallery, f[:num_query].tocsr(), f[num_query:].T.tocsr(), row_max[:num_query], k2,
                        fallback)
