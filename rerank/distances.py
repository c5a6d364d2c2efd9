"""The return type of every re-ranker: query x gallery distances produced one block of query rows at a time.

Why not a dense matrix: for MSMT17-sized problems (12K queries, 82K gallery) the Q x G matrix alone is 4 GB, and the
methods' intermediate N x N matrices are what makes the reference implementations run out of memory (ACP paper,
Sec. IV-C1). A re-ranker here returns a `RerankedDistances`: its sparse, O(N x k) state (expanded embeddings,
k-reciprocal / contextual encodings, propagated adjacency rows) plus the rule that turns a block of original
query-gallery distances into re-ranked ones. Consumers pull what they need:

- `iter_blocks(chunk_size)`: (start, stop, float32 (stop - start, G)) blocks, exact, O(chunk_size x G) memory;
  `rerank.evaluate_reranked` feeds them to `data.evaluation`, so mAP / CMC are exact at any scale;
- `top_k(k)`: the first k gallery items per query (distances and indices, ties by lower index), e.g. to store
  ranked lists;
- `dense()` (or `numpy.asarray(result)`): the whole Q x G matrix, only when explicitly asked for.

A block is the original distance block (of `metric` between `query` and `gallery`) passed through `_rerank`;
subclasses keep the method's sparse state and override `_rerank`. The base class itself serves the feature
expansion methods (AQE, alpha-QE, ACP's Eq. 1): their re-ranked distance is a plain distance between expanded
embeddings.

Gallery items that share no context with a query (no common neighbour) all get the same distance in SCA, ECN and
GNN re-ranking; the methods here order them by the original distance instead (`fallback=True`, the rule ECN's
authors added to their released code for large open-set galleries), see `related_or_original`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from data.evaluation import default_chunk_size
from rerank.knn import iter_distance_chunks, smallest_k
from rerank.neighbours import progress


class RerankedDistances:
    """Re-ranked distances between `query` (Q, d) and `gallery` (G, d) rows, built block by block.

    Args:
      query, gallery: float32 embeddings the original distance blocks are computed from (for AQE / alpha-QE /
        ACP the expanded embeddings, whose plain distance IS the re-ranked distance).
      metric: a `rerank.knn.METRICS` metric for those blocks.
    """

    def __init__(self, query: np.ndarray, gallery: np.ndarray, metric: str = "euclidean"):
        self.query, self.gallery, self.metric = query, gallery, metric

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.query), len(self.gallery)

    def _rerank(self, start: int, stop: int, original: np.ndarray) -> np.ndarray:
        """Re-ranked distances of queries start..stop-1 from their original distance block."""
        return original

    def iter_blocks(self, chunk_size: int | None = None, verbose: int = 0) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (start, stop, float32 re-ranked distances of queries start..stop-1 to every gallery item)."""
        step = chunk_size or default_chunk_size(len(self.gallery))
        bar = progress(len(self.query), verbose, "query rows")
        for start, stop, original in iter_distance_chunks(self.query, self.gallery, self.metric, step):
            yield start, stop, np.asarray(self._rerank(start, stop, original), dtype=np.float32)
            bar.update(stop)

    def dense(self, chunk_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """The full (Q, G) float32 matrix: only where it is explicitly wanted (it is Q x G x 4 bytes)."""
        out = np.empty(self.shape, dtype=np.float32)
        for start, stop, block in self.iter_blocks(chunk_size, verbose):
            out[start:stop] = block
        return out

    def top_k(self, k: int, chunk_size: int | None = None, verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The k best gallery items per query: (distances float32 (Q, k), indices int64 (Q, k)), best first.

        Ties are broken by the lower gallery index, as `data.evaluation` ranks them.
        """
        if not 1 <= k <= len(self.gallery):
            raise ValueError(f"top_k k={k} must be between 1 and the gallery size ({len(self.gallery)})")
        distances = np.empty((len(self.query), k), dtype=np.float32)
        indices = np.empty((len(self.query), k), dtype=np.int64)
        for start, stop, block in self.iter_blocks(chunk_size, verbose):
            distances[start:stop], indices[start:stop] = smallest_k(block, k)
        return distances, indices

    def __array__(self, dtype=None, copy=None):
        dense = self.dense()
        return dense if dtype is None else dense.astype(dtype)


def related_or_original(reranked: np.ndarray, related: np.ndarray, original: np.ndarray,
                        fallback: bool) -> np.ndarray:
    """Where a query and a gallery item share no context (`related` False), 1 + the original distance.

    The methods' own distance is at most 1 and equals 1 exactly for every unrelated pair, so this keeps every
    related pair ahead and orders the unrelated rest by the original distance instead of by index. With
    `fallback=False` the methods' values are returned unchanged (the published algorithms, ties and all).
    """
    if not fallback:
        return reranked
    return np.where(related, reranked, 1.0 + original)
