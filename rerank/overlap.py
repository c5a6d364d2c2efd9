"""The sum of element-wise minima between sparse rows: the numerator of the generalised Jaccard index.

k-reciprocal re-ranking (Zhong et al. 2017, Eq. 10-11) and SCA (Bai and Bai 2016) compare two images by
sum_k min(V_pk, V_gk) over their sparse contextual vectors. The reference implementations loop over queries with an
inverted index (for each non-zero column of the query's vector, the images whose vector is non-zero there). Here
the same join runs vectorised over a block of queries: every (query, column, gallery) triple with both entries
non-zero is listed, min-ed and summed into the (queries x gallery) block, `_MAX_TRIPLES` at a time.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_MAX_TRIPLES = 1 << 22


def min_overlap(query_rows: sp.csr_matrix, gallery_by_column: sp.csr_matrix) -> np.ndarray:
    """out[i, g] = sum_k min(query_rows[i, k], gallery_by_column[k, g]) as a dense float64 (rows, G) block.

    Args:
      query_rows: (c, N) CSR, the contextual vectors of a block of queries.
      gallery_by_column: (N, G) CSR, the gallery's contextual vectors transposed (row k lists the gallery items
        whose vector is non-zero at k: the inverted index).
    """
    num_rows, num_gallery = query_rows.shape[0], gallery_by_column.shape[1]
    out = np.zeros(num_rows * num_gallery, dtype=np.float64)
    columns = query_rows.indices
    counts = gallery_by_column.indptr[columns + 1] - gallery_by_column.indptr[columns]
    owner = np.repeat(np.arange(num_rows), np.diff(query_rows.indptr))
    ends = np.cumsum(counts)
    first = 0
    while first < len(columns):
        # Take non-zeros until their triples exceed the budget (always at least one).
        budget_end = (ends[first - 1] if first else 0) + _MAX_TRIPLES
        last = max(first + 1, int(np.searchsorted(ends, budget_end, side="right")))
        count = counts[first:last]
        total = int(count.sum())
        if total:
            offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
            positions = np.repeat(gallery_by_column.indptr[columns[first:last]], count) + offsets
            minima = np.minimum(np.repeat(query_rows.data[first:last], count), gallery_by_column.data[positions])
            flat = np.repeat(owner[first:last], count) * num_gallery + gallery_by_column.indices[positions]
            out += np.bincount(flat, weights=minima, minlength=len(out))
        first = last
    return out.reshape(num_rows, num_gallery)
