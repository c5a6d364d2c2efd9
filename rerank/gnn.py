"""GNN re-ranking (Zhang et al., "Understanding image retrieval re-ranking: a graph neural network perspective",
arXiv 2012.07620, 2020), following the authors' released `gnn_reranking(X_q, X_g, k1, k2)`, with sparse matrices
where the release builds dense N x N ones on the GPU.

Over all N = Q + G L2-normalised embeddings:
1. S, I = the k1 largest cosine similarities of each row and their indices (the row itself first);
   A = the binary k1-NN adjacency (A[i, I[i, m]] = 1); S = S^2.
2. Unless k2 = 1, two rounds of: A = A + A^T; A_i = sum_{m < k2} S[i, m] A_{I[i, m]} (message passing over the
   k2 strongest edges); rows of A L2-normalised.
3. Similarity(p, g) = A_p . A_g; the release returns the gallery sorted by it.
4. `lambda_value` > 0 (default 0, the 2020 release above): distance = (1 - lambda) (1 - A_p . A_g) + lambda
   d(p, g), with d the original cosine distance; the 2023 update of the authors' repository mixes the original
   distance in with lambda = 0.3 (our reading of it, as k-reciprocal re-ranking mixes its Jaccard distance with
   lambda on the original; we could not run their code here).

Choices of ours (for WORKSPACE.md):
- The release returns rankings, not distances; the distance here is 1 - A_p . A_g (in [0, 1]). With k2 = 1
  the release ranks by the raw count of shared neighbours; we divide A by sqrt(k1) so the distance stays in
  [0, 1] with the same order.
- Pairs with A_p . A_g = 0 all tie in the release; with `fallback=True` (default) they get 1 + the original
  cosine distance, so they follow every related pair in their original order (`distances.related_or_original`).
  With lambda_value > 0 the mixed-in original distance already orders them, and `fallback` is not used.
- Defaults k1 = 26, k2 = 7 are the release's Market-1501 values; the ACP paper sets k1 to N/C.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rerank.distances import RerankedDistances, related_or_original
from rerank.neighbours import (DEFAULT_CHUNK_SIZE, check_count, check_features, l2_normalize, nearest,
                                   neighbour_matrix, normalize_rows, stack)

PROPAGATION_ROUNDS = 2


class GNNDistances(RerankedDistances):
    """1 - A_p . A_g from the propagated sparse adjacency rows."""

    def __init__(self, query, gallery, query_a: sp.csr_matrix, gallery_a_by_column: sp.csr_matrix, fallback: bool,
                 lambda_value: float = 0.0):
        super().__init__(query, gallery, "cosine")
        self.query_a, self.gallery_a_by_column, self.fallback = query_a, gallery_a_by_column, fallback
        self.lambda_value = lambda_value

    def _rerank(self, start, stop, original):
        similarity = (self.query_a[start:stop] @ self.gallery_a_by_column).toarray()
        if self.lambda_value:
            return (1.0 - self.lambda_value) * (1.0 - similarity) + self.lambda_value * original
        return related_or_original(1.0 - similarity, similarity > 0, original, self.fallback)


def gnn(query, gallery, k1: int = 26, k2: int = 7, fallback: bool = True, lambda_value: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> GNNDistances:
    """GNN re-ranking of query x gallery (see the module docstring).

    Args:
      query, gallery: (Q, d) and (G, d) embeddings (L2-normalised here).
      k1: neighbours in the initial adjacency, itself included.
      k2: edges used by message passing, k2 <= k1 (1 turns propagation off).
      fallback: order pairs with no shared neighbour by their original distance (see above).
      lambda_value: weight of the original cosine distance mixed in (0: the 2020 release; 0.3: the 2023 one).
      chunk_size: rows per chunk of the neighbour pass.
    """
    query, gallery = check_features(query, gallery)
    everything = l2_normalize(stack(query, gallery))
    n = len(everything)
    k1 = check_count("k1", k1, 1, n, f"at most the {n} query + gallery embeddings")
    k2 = check_count("k2", k2, 1, k1, "message passing uses the k2 strongest of the k1 edges")
    lambda_value = float(lambda_value)
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value={lambda_value} must be in [0, 1] (the weight of the original distance)")
    cosine_distance, indices, _ = nearest(everything, k1, "cosine", chunk_size, verbose=verbose)
    adjacency = neighbour_matrix(indices, 1.0, n)
    if k2 == 1:
        adjacency = adjacency / np.sqrt(k1)
    else:
        similarity = 1.0 - cosine_distance[:, :k2].astype(np.float64)
        message = neighbour_matrix(indices[:, :k2], similarity * similarity, n)
        for _ in range(PROPAGATION_ROUNDS):
            adjacency = normalize_rows(message @ (adjacency + adjacency.T).tocsr())
    adjacency = sp.csr_matrix(adjacency, dtype=np.float32)
    num_query = len(query)
    return GNNDistances(everything[:num_query], everything[num_query:], adjacency[:num_query].tocsr(),
                        adjacency[num_query:].T.tocsr(), fallback, lambda_value)
