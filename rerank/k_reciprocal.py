"""k-reciprocal re-ranking (Zhong et al., "Re-ranking person re-identification with k-reciprocal encoding", CVPR
2017), exactly as the reference `re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)` of
zhunzhong07/person-re-ranking (and torchreid's copy) computes it from plain Euclidean distances, but with sparse
neighbour structures instead of its N x N matrices. The ACP paper cites Zhong et al., so this is what its
comparison (Table V) measures. FastReID's `re_ranking` file holds the same function, but FastReID's evaluator
(`ReidEvaluator`, TEST.RERANK) re-ranks with `compute_jaccard_distance`, a different k-reciprocal variant (the
one of its unsupervised-learning code: its own neighbour search and encoding of the Jaccard distance); numbers
from FastReID's evaluator with re-ranking on are that variant's, not this module's.

The reference, over all N = Q + G embeddings:
1. d(i, j) = squared Euclidean distance divided by the column maximum (the matrix is symmetric, so row i is
   divided by max_j d(i, j)); ranking = argsort of each row (the embedding itself first).
2. R(i, k) = the k-reciprocal set: j among the k + 1 nearest of i AND i among the k + 1 nearest of j.
3. Expansion (Eq. 7): for each c in R(i, k1), R(c, round(k1 / 2)) (numpy rounding, half to even) is added when
   more than 2/3 of it lies in R(i, k1).
4. V_i (Eq. 8-9): exp(-d(i, j)) on the expanded set, normalised to sum 1.
5. Local query expansion (Eq. 12), unless k2 = 1: V_i = mean of V_j over the k2 nearest j of i (i included).
6. Jaccard distance (Eq. 11): 1 - m / (2 - m), m = sum_k min(V_pk, V_gk).
7. final = (1 - lambda) * Jaccard + lambda * d(p, g).

Here the ranking needs only the max(k1 + 1, k2) nearest neighbours of each row (one chunked pass that also finds
the row maxima), sets are masks over those lists, V is a sparse N x N matrix with a few hundred non-zeros per row,
and the Jaccard numerator is `overlap.min_overlap`. Distances to expanded-set members that are not among a row's
nearest neighbours are computed pair by pair. Ties in the ranking go to the lower index (`rerank.knn.knn`'s
rule); the reference's unstable argsort leaves them unspecified.

A query and a gallery item without a common non-zero in V get Jaccard distance 1 and so final distance
(1 - lambda) + lambda d(p, g): for them the re-ranked order is the original order.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rerank.distances import RerankedDistances
from rerank.neighbours import (DEFAULT_CHUNK_SIZE, check_count, check_features, check_fraction, nearest,
                                   neighbour_matrix, pair_sqdistances, stack)
from rerank.overlap import min_overlap
from rerank.query_expansion import expanded_embeddings

# The neighbour pass keeps _LOOKUP_WIDTH x (k1 + 1) neighbours per row, so that the distances to most members of
# the expanded sets (neighbours of neighbours) are looked up rather than recomputed.
_LOOKUP_WIDTH = 2
_LOOKUP_PAIRS = 1 << 18
_SET_ROWS = 4096  # rows whose expanded sets are built at once: 4096 x 21 x 11 x 21 booleans = 20 MB for k1 = 20


def reciprocal_mask(indices: np.ndarray, k: int) -> np.ndarray:
    """mask[i, m]: is indices[i, m] (m <= k) a k-reciprocal neighbour of i, i.e. is i among its k + 1 nearest?"""
    forward = indices[:, :k + 1]
    mask = np.empty(forward.shape, dtype=bool)
    for start in range(0, len(forward), _SET_ROWS):
        rows = np.arange(start, min(start + _SET_ROWS, len(forward)))
        backward = indices[forward[rows], :k + 1]
        mask[rows] = (backward == rows[:, None, None]).any(axis=2)
    return mask


def expanded_reciprocal_sets(indices: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of every row's expanded k-reciprocal set (steps 2-3 above) as COO (rows, cols), sorted by row.

    `indices` are the nearest-first neighbour lists of all N embeddings, at least k1 + 1 wide.
    """
    half = int(np.around(k1 / 2.0))
    mask = reciprocal_mask(indices, k1)
    half_mask = reciprocal_mask(indices, half)
    half_size = half_mask.sum(axis=1)
    rows_out, cols_out = [], []
    for start in range(0, len(indices), _SET_ROWS):
        stop = min(start + _SET_ROWS, len(indices))
        forward = indices[start:stop, :k1 + 1]
        members = np.where(mask[start:stop], forward, -1)
        candidates = indices[forward, :half + 1]          # (n, k1 + 1, half + 1): the lists of each neighbour c
        candidate_mask = half_mask[forward]
        in_members = (np.where(candidate_mask, candidates, -2)[..., None] == members[:, None, None, :]).any(axis=3)
        shared = in_members.sum(axis=2)
        accepted = mask[start:stop] & (shared > 2.0 / 3.0 * half_size[forward])
        added = np.where(accepted[..., None] & candidate_mask, candidates, -1).reshape(stop - start, -1)
        union = np.sort(np.concatenate([members, added], axis=1), axis=1)
        keep = union >= 0
        keep[:, 1:] &= union[:, 1:] != union[:, :-1]
        rows_out.append(np.nonzero(keep)[0] + start)
        cols_out.append(union[keep])
    return np.concatenate(rows_out), np.concatenate(cols_out)


def member_sqdistances(features: np.ndarray, distances: np.ndarray, indices: np.ndarray, rows: np.ndarray,
                       cols: np.ndarray) -> np.ndarray:
    """Squared distances of the (rows, cols) pairs: from the neighbour lists where cols[p] is in row rows[p]'s
    list, computed pair by pair otherwise (float64)."""
    out = np.empty(len(rows), dtype=np.float64)
    missing = []
    for start in range(0, len(rows), _LOOKUP_PAIRS):
        r, c = rows[start:start + _LOOKUP_PAIRS], cols[start:start + _LOOKUP_PAIRS]
        hits = indices[r] == c[:, None]
        found = hits.any(axis=1)
        out[start:start + len(r)][found] = distances[r[found], hits[found].argmax(axis=1)]
        missing.append(np.nonzero(~found)[0] + start)
    missing = np.concatenate(missing)
    out[missing] = pair_sqdistances(features, rows[missing], cols[missing])
    return out


class KReciprocalDistances(RerankedDistances):
    """(1 - lambda) Jaccard(V_p, V_g) + lambda d(p, g), blocks of query rows computed from the sparse V."""

    def __init__(self, query, gallery, query_v: sp.csr_matrix, gallery_v_by_column: sp.csr_matrix,
                 query_row_max: np.ndarray, lambda_value: float):
        super().__init__(query, gallery, "sqeuclidean")
        self.query_v, self.gallery_v_by_column = query_v, gallery_v_by_column
        self.query_row_max, self.lambda_value = query_row_max, lambda_value

    def _rerank(self, start, stop, original):
        overlap = min_overlap(self.query_v[start:stop], self.gallery_v_by_column)
        jaccard = 1.0 - overlap / (2.0 - overlap)
        normalised = original / self.query_row_max[start:stop, None]
        return (1.0 - self.lambda_value) * jaccard + self.lambda_value * normalised


def k_reciprocal(query, gallery, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> KReciprocalDistances:
    """k-reciprocal re-ranking of query x gallery (see the module docstring for the algorithm).

    Args:
      query, gallery: (Q, d) and (G, d) embeddings; distances are Euclidean, squared as in the reference.
      k1: k-reciprocal neighbourhood size (20; the ACP paper uses N/C, Table IV). k1 + 1 <= Q + G.
      k2: local query expansion size (6); 1 turns it off.
      lambda_value: weight of the original distance in the final distance (0.3).
      chunk_size: rows per chunk of the neighbour pass.
    """
    query, gallery = check_features(query, gallery)
    everything = stack(query, gallery)
    n = len(everything)
    k1 = check_count("k1", k1, 1, n - 1, f"k1 + 1 neighbours must exist among the {n} query + gallery embeddings")
    k2 = check_count("k2", k2, 1, n, f"at most the {n} query + gallery embeddings")
    lambda_value = check_fraction("lambda_value", lambda_value)
    width = min(n, max(_LOOKUP_WIDTH * (k1 + 1), k2))
    distances, indices, row_max = nearest(everything, width, "sqeuclidean", chunk_size, with_row_max=True,
                                          verbose=verbose)
    row_max = np.maximum(row_max, np.finfo(np.float32).tiny)
    rows, cols = expanded_reciprocal_sets(indices, k1)
    weights = np.exp(-member_sqdistances(everything, distances, indices, rows, cols) / row_max[rows])
    weights /= np.bincount(rows, weights, minlength=n)[rows]
    v = sp.csr_matrix((weights, (rows, cols)), shape=(n, n))
    if k2 != 1:
        v = neighbour_matrix(indices[:, :k2], 1.0 / k2, n) @ v
    v = v.astype(np.float32)
    num_query = len(query)
    return KReciprocalDistances(query, gallery, v[:num_query].tocsr(), v[num_query:].T.tocsr(),
                                row_max[:num_query], lambda_value)


def alpha_qe_k_reciprocal(query, gallery, k: int = 10, alpha: float = 3.0, k1: int = 20, k2: int = 6,
                          lambda_value: float = 0.3, chunk_size: int = DEFAULT_CHUNK_SIZE,
                          verbose: int = 0) -> KReciprocalDistances:
    """alpha-QE (k, alpha) on all embeddings, then k-reciprocal re-ranking (k1, k2, lambda_value) of the result:
    the "alpha-QE + k-reciprocal" column of ACP Table V."""
    expanded_query, expanded_gallery = expanded_embeddings(query, gallery, k, alpha, chunk_size, verbose)
    return k_reciprocal(expanded_query, expanded_gallery, k1, k2, lambda_value, chunk_size, verbose)
