"""Re-ranking of query x gallery embeddings: the classic methods ACP is compared with (ACP paper, Table V), built to
run on 100K+ embeddings with memory linear in N.

Every method is `method(query, gallery, **params) -> RerankedDistances` (`METHODS` maps the `--method` names of a
re-ranking binary to them; `rerank(name, query, gallery, **params)` dispatches):

| name | function | parameters (defaults) |
|---|---|---|
| aqe | `aqe` | k=10, expand="normalized" |
| alpha_qe | `alpha_qe` | k=10, alpha=3, expand="normalized" |
| k_reciprocal | `k_reciprocal` | k1=20, k2=6, lambda_value=0.3 |
| alpha_qe_k_reciprocal | `alpha_qe_k_reciprocal` | k=10, alpha=3, k1=20, k2=6, lambda_value=0.3 |
| sca | `sca` | k1=20, k2=6, fallback=True |
| ecn | `ecn` | k=25, t=3, q=8, fallback=True |
| gnn | `gnn` | k1=26, k2=7, fallback=True, lambda_value=0 |

All also take `chunk_size` (rows per chunk of the neighbour pass) and `verbose`. The ACP paper sets every method's
first-order neighbourhood (k, k1) to N/C, gallery images per identity (Table IV). `expand="raw"` is FastReID's
query expansion (raw embeddings summed), `lambda_value=0.3` the 2023 upstream GNN re-ranking (see their modules).

The return value (`distances.RerankedDistances`) holds the method's sparse state and produces exact re-ranked
distances one block of query rows at a time: `iter_blocks`, `top_k(k)` for ranked lists, `dense()` (or
`numpy.asarray`) when the Q x G matrix is explicitly wanted, and `evaluate_reranked(...)` for CMC / mAP / mINP
under a `data.evaluation` protocol without ever holding Q x G. Nothing N x N is built: one chunked kNN pass
(TensorFlow, GPU when visible) over the N = Q + G embeddings, then sparse structures with O(k) to O(k^2) non-zeros
per row.

`expand_embeddings(features, neighbour_idx, weights)` is ACP's Eq. 1 (also AQE's and alpha-QE's core), for the
ACP re-ranker to reuse with its predicted weights.
"""
from __future__ import annotations

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
from rerank.distances import RerankedDistances
from rerank.ecn import ecn
from rerank.evaluation import evaluate_reranked
from rerank.expansion import expand_embeddings
from rerank.gnn import gnn
from rerank.k_reciprocal import alpha_qe_k_reciprocal, k_reciprocal
from rerank.neighbours import check_features, nearest
from rerank.query_expansion import alpha_qe, aqe, expanded_embeddings
from rerank.sca import sca

METHODS = {
    "aqe": aqe,
    "alpha_qe": alpha_qe,
    "k_reciprocal": k_reciprocal,
    "alpha_qe_k_reciprocal": alpha_qe_k_reciprocal,
    "sca": sca,
    "ecn": ecn,
    "gnn": gnn,
}


def rerank(method: str, query, gallery, **params) -> RerankedDistances:
    """Run the re-ranker registered as `method` in `METHODS` with its keyword parameters."""
    if method not in METHODS:
        raise ValueError(f"unknown re-ranking method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method](query, gallery, **params)


__all__ = ["METHODS", "RerankedDistances", "alpha_qe", "alpha_qe_k_reciprocal", "aqe", "check_features", "ecn",
           "evaluate_reranked", "expand_embeddings", "expanded_embeddings", "gnn", "k_reciprocal", "nearest",
           "rerank", "sca"]
