"""Expanded Cross Neighbourhood (ECN) re-ranking (Sarfraz et al., "A pose-sensitive embedding for person
re-identification with expanded cross neighborhood re-ranking", CVPR 2018), with the rank-list distance, following
the authors' released code (pse-ecn/pose-sensitive-embedding, evaluation/matlab/saquibRerank) with sparse matrices.

Over all N = Q + G L2-normalised embeddings ranked by cosine distance (each list starts with the image itself):
1. Expanded neighbourhood N(i): the t nearest neighbours of i (itself excluded), followed by the q nearest
   neighbours (themselves excluded) of each of those: M = t + t q images, repeats kept.
2. Rank-list similarity R(i, j) = sum_l (k - pos_i(l)) (k - pos_j(l)) over the images l in the top k of both
   lists (pos 0-based); rank distance r(i, j) = 1 - R(i, j) / R_max with R_max = sum_{v=1..k} v^2 = R(i, i),
   the released code's per-row min-max normalisation whenever some image shares no top-k neighbour with i.
3. ECN(p, g) = mean of r(n, g) over n in N(p) and of r(n, p) over n in N(g) (Eq. 2 of the paper, 2M terms).

With F the sparse N x N matrix of (k - pos) weights and E the N x N matrix counting N(i), step 3 is
ECN = 1 - (A_p F_g^T + F_p A_g^T) / (2 M R_max), A = E F: sparse products, O(N M k) memory.

A pair whose expanded neighbourhoods share no top-k image has ECN distance exactly 1; with `fallback=True`
(default) it gets 1 + the original cosine distance, which is the rule the authors added to their later Python
release ("use orig_dist values where rank-list based similarities are zero -- fixes behaviour in large scale
open-ended retrievals"): related pairs first, the rest in their original order.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rerank.distances import RerankedDistances, related_or_original
from rerank.neighbours import (DEFAULT_CHUNK_SIZE, check_count, check_features, l2_normalize, nearest,
                                   neighbour_matrix, stack)


class ECNDistances(RerankedDistances):
    """ECN distances from the sparse rank-list weights F and their neighbourhood sums A = E F."""

    def __init__(self, query, gallery, query_a: sp.csr_matrix, gallery_f_by_column: sp.csr_matrix,
                 query_f: sp.csr_matrix, gallery_a_by_column: sp.csr_matrix, scale: float, fallback: bool):
        super().__init__(query, gallery, "cosine")
        self.query_a, self.gallery_f_by_column = query_a, gallery_f_by_column
        self.query_f, self.gallery_a_by_column = query_f, gallery_a_by_column
        self.scale, self.fallback = scale, fallback

    def _rerank(self, start, stop, original):
        similarity = ((self.query_a[start:stop] @ self.gallery_f_by_column)
                      + (self.query_f[start:stop] @ self.gallery_a_by_column)).toarray()
        return related_or_original(1.0 - similarity / self.scale, similarity > 0, original, self.fallback)


def ecn(query, gallery, k: int = 25, t: int = 3, q: int = 8, fallback: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> ECNDistances:
    """ECN re-ranking of query x gallery (see the module docstring).

    Args:
      query, gallery: (Q, d) and (G, d) embeddings (L2-normalised here; ranking by cosine distance).
      k: length of the rank lists compared by the rank-list distance (25 in the released code).
      t: first-order neighbours in the expanded neighbourhood (3).
      q: second-order neighbours of each first-order one (8).
      fallback: order pairs without shared context by their original distance (see above).
      chunk_size: rows per chunk of the neighbour pass.
    """
    query, gallery = check_features(query, gallery)
    everything = l2_normalize(stack(query, gallery))
    n = len(everything)
    k = check_count("k", k, 1, n, f"rank lists longer than the {n} query + gallery embeddings")
    t = check_count("t", t, 1, n - 1, f"t neighbours besides itself must exist among the {n} embeddings")
    q = check_count("q", q, 1, n - 1, f"q neighbours besides itself must exist among the {n} embeddings")
    _, indices, _ = nearest(everything, max(k, t + 1, q + 1), "cosine", chunk_size, verbose=verbose)
    f = neighbour_matrix(indices[:, :k], np.arange(k, 0, -1, dtype=np.float64), n)
    first = indices[:, 1:t + 1]
    second = indices[first, 1:q + 1].reshape(n, t * q)
    e = neighbour_matrix(np.concatenate([first, second], axis=1), 1.0, n)
    f = f.astype(np.float32)
    a = (e @ f).astype(np.float32)  # integers below 2^24: exact in float32
    size = t + t * q
    r_max = float(np.sum(np.arange(1, k + 1, dtype=np.float64) ** 2))
    num_query = len(query)
    return ECNDistances(everything[:num_query], everything[num_query:], a[:num_query].tocsr(),
                        f[num_query:].T.tocsr(), f[:num_query].tocsr(), a[num_query:].T.tocsr(),
                        2.0 * size * r_max, fallback)
