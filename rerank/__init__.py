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
(`keras.ops` on the active Keras backend: TensorFlow, JAX or PyTorch, a GPU when visible) over the N = Q + G
embeddings, then sparse structures (NumPy / SciPy) with O(k) to O(k^2) non-zeros per row. Inputs may be NumPy
arrays, JAX arrays or PyTorch CPU tensors: anything `numpy.asarray` accepts.

`expand_embeddings(features, neighbour_idx, weights)` is ACP's Eq. 1 (also AQE's and alpha-QE's core), for the
ACP re-ranker to reuse with its predicted weights.

Importing this package registers `none` / `baseline` (the original ranking) and every method of `METHODS` in
`rerank.registry`, the name -> method table through which `rerank.runner` re-ranks and evaluates a feature file;
ACP and a user's own methods register there through the same interface (ACP known by its module, `acp.acp_rerank`,
imported on first use: importing `rerank` loads no TensorFlow). Also here: `knn` (the chunked kNN pass),
`neighbourhood` (N/C, Table IV's first-order neighbourhood), `evaluation` (exact evaluation of features and of
re-ranked distances, block by block), `reference` (dense reference implementations for tests and benchmarks),
`synthetic` (clustered embeddings for tests and benchmarks).
"""
from __future__ import annotations

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
from rerank import registry
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
    """Run the classic re-ranker `method` of `METHODS` on embedding arrays with its keyword parameters."""
    if method not in METHODS:
        raise ValueError(f"unknown re-ranking method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method](query, gallery, **params)


def _original(query, gallery, params, model=None, metric="cosine", verbose=0) -> RerankedDistances:
    """The original ranking: plain `metric` distances between the embeddings (`registry` interface)."""
    del params, model, verbose
    return RerankedDistances(*check_features(query.embedding, gallery.embedding), metric)


# The registry's built-in methods (`rerank.registry`): the original ranking and the classic re-rankers, with the
# parameters that set their first-order neighbourhood (ACP Table IV sets them to N/C) and the one whose value 1
# returns the original ranking.
for _name in ("none", "baseline"):
    registry.register(registry.Reranker(_name, _original, uses_metric=True))
_FACTS = {"aqe": dict(first_order=("k",), unchanged_at_one="k"),
          "alpha_qe": dict(first_order=("k",), unchanged_at_one="k"),
          "k_reciprocal": dict(first_order=("k1",)),
          "alpha_qe_k_reciprocal": dict(first_order=("k", "k1"), unchanged_at_one="k"),
          "sca": dict(first_order=("k1",)),
          "ecn": dict(),
          "gnn": dict(first_order=("k1",), k2_within_k1=True, checks_given_k2=True)}
for _name, _function in METHODS.items():
    registry.register(registry.from_function(_name, _function, **_FACTS[_name]))
# ACP (`acp.acp_rerank`, which loads TensorFlow) by its module's name: imported when "acp" is first asked for, so
# `rerank` itself never imports `acp` (the layering) nor TensorFlow.
registry.register_module("acp", "acp.acp_rerank")


__all__ = ["METHODS", "RerankedDistances", "alpha_qe", "alpha_qe_k_reciprocal", "aqe", "check_features", "ecn",
           "evaluate_reranked", "expand_embeddings", "expanded_embeddings", "gnn", "k_reciprocal", "nearest",
           "registry", "rerank", "sca"]
