"""Re-ranking a feature file with any method and evaluating it: what `acp-rerank` (`acp.rerank_cli`) and the demo
run.

Methods (`METHOD_NAMES`): `none` (alias `baseline`: the original distances under `metric`), `acp` (Eq. 1 with a
trained ACP model, `acp.acp_rerank`; parameters k1 (default N/C of the gallery), k2 (6), batch_size, chunk_size)
and every classic re-ranker of `acp.rerank.METHODS` with its own defaults.

`evaluate_method` returns mAP, mINP, the CMC, the number of queries, the re-ranking wall time (`seconds_rerank`: the
method's neighbour search and state; `seconds_evaluate`: the exact evaluation, which also produces the re-ranked
distances block by block and so is part of the cost of the lazy methods) and the process's peak resident memory
(`peak_rss_mb`, the kernel's high-water mark, TensorFlow's own footprint included).

The protocol comes from the file's `dataset` field (`PROTOCOL_BY_DATASET`; "market1501" for the other datasets and
for files without a dataset name) unless one is given. No dataset needs to be on disk for that: the table mirrors
the protocols the readers of `data.datasets` put in their records.
"""
from __future__ import annotations

import inspect
import os
import resource
import time

import numpy as np

from acp import acp_rerank
from acp import features as feature_files
from acp import rerank

BASELINE_METHODS = ("none", "baseline")
METHOD_NAMES = BASELINE_METHODS + ("acp",) + tuple(rerank.METHODS)
# Records of these datasets evaluate with another protocol than market1501 (their readers in data.datasets).
PROTOCOL_BY_DATASET = {"vehicleid": "vehicleid", "cuhk01": "single_shot", "cuhk03_labeled": "single_shot",
                       "cuhk03_detected": "single_shot"}
# The parameters that set each method's first-order neighbourhood, which ACP Table IV sets to N/C.
FIRST_ORDER_PARAMS = {"aqe": ("k",), "alpha_qe": ("k",), "k_reciprocal": ("k1",), "alpha_qe_k_reciprocal": ("k", "k1"),
                      "sca": ("k1",), "gnn": ("k1",), "acp": ("k1",)}
ACP_PARAMS = ("k1", "k2", "batch_size", "chunk_size")


def parse_params(items) -> dict:
    """`["k1=20", "alpha=3.0", "fallback=false"]` -> {"k1": 20, "alpha": 3.0, "fallback": False}."""
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name.isidentifier() or not text:
            raise ValueError(f"--param={item!r}: expected NAME=VALUE, e.g. k1=20")
        lowered = text.lower()
        if lowered in ("true", "false"):
            params[name] = lowered == "true"
            continue
        for kind in (int, float):
            try:
                params[name] = kind(text)
                break
            except ValueError:
                continue
        else:
            params[name] = text
    return params


def protocol_for(dataset: str) -> str:
    return PROTOCOL_BY_DATASET.get(dataset, "market1501")


def method_params(method: str, params: dict, gallery_pids, table_iv: bool) -> dict:
    """`params` plus, with `table_iv`, N/C for the method's first-order neighbourhood where not given."""
    if not table_iv:
        return dict(params)
    k = acp_rerank.default_k1(gallery_pids)
    return {**{name: k for name in FIRST_ORDER_PARAMS.get(method, ())}, **params}


def run_method(query: feature_files.FeatureSet, gallery: feature_files.FeatureSet, method: str, params: dict,
               model=None, metric: str = "cosine", verbose: int = 0) -> tuple[rerank.RerankedDistances, dict]:
    """Re-rank `query` x `gallery` rows (of a feature file) with `method`; returns (distances, the parameters used).

    `model` is the ACP model for method "acp". Errors (unknown method or parameter, k1 beyond the set, non-finite
    features, dimension mismatches) are ValueErrors naming the culprit.
    """
    if not len(query) or not len(gallery):
        raise ValueError(f"{query.origin}: needs query and gallery rows, has {len(query)} and {len(gallery)}")
    if method in BASELINE_METHODS:
        if params:
            raise ValueError(f"--method={method} takes no parameters, got {sorted(params)}")
        query_embedding, gallery_embedding = rerank.check_features(query.embedding, gallery.embedding)
        return rerank.RerankedDistances(query_embedding, gallery_embedding, metric), {"metric": metric}
    if method == "acp":
        if model is None:
            raise ValueError("--method=acp needs a trained model: pass --checkpoint (an acp-train --train_dir)")
        unknown = sorted(set(params) - set(ACP_PARAMS))
        if unknown:
            raise ValueError(f"--method=acp: unknown parameter(s) {unknown}; known: {list(ACP_PARAMS)}")
        result, k1 = acp_rerank.rerank_feature_sets(query, gallery, model, metric=metric, verbose=verbose, **params)
        return result, {"k1": k1, "k2": params.get("k2", acp_rerank.DEFAULT_K2), "metric": metric,
                        **{k: v for k, v in params.items() if k not in ("k1", "k2")}}
    if method not in rerank.METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHOD_NAMES)}")
    known = [name for name in inspect.signature(rerank.METHODS[method]).parameters
             if name not in ("query", "gallery", "verbose")]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"--method={method}: unknown parameter(s) {unknown}; known: {known}")
    return rerank.rerank(method, query.embedding, gallery.embedding, verbose=verbose, **params), params


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate_method(features: feature_files.FeatureSet, method: str, params: dict | None = None, model=None,
                    metric: str = "cosine", protocol: str | None = None, max_rank: int = 50,
                    table_iv_neighbourhood: bool = False, top_k: int = 0, verbose: int = 0) -> dict:
    """Re-rank and evaluate; the dict `acp-rerank` prints and writes (see the module docstring), plus "top"
    = (distances, indices) of the first `top_k` gallery items per query when `top_k` > 0."""
    query, gallery = features.query, features.gallery
    params = method_params(method, params or {}, gallery.pid, table_iv_neighbourhood)
    protocol = protocol or protocol_for(features.dataset)
    start = time.perf_counter()
    result, used = run_method(query, gallery, method, params, model, metric, verbose)
    rerank_seconds = time.perf_counter() - start
    metrics = rerank.evaluate_reranked(result, query.pid, gallery.pid, query.camid, gallery.camid,
                                       protocol=protocol, max_rank=max_rank, verbose=verbose)
    evaluate_seconds = time.perf_counter() - start - rerank_seconds
    out = {"method": method, "params": used, "protocol": protocol, "dataset": features.dataset,
           "features": features.origin, "num_query": len(query), "num_gallery": len(gallery),
           "mAP": float(metrics["mAP"]), "mINP": float(metrics["mINP"]), "cmc": [float(v) for v in metrics["cmc"]],
           "num_queries": int(metrics["num_queries"]), "num_skipped": int(metrics["num_skipped"]),
           "seconds_rerank": rerank_seconds, "seconds_evaluate": evaluate_seconds, "peak_rss_mb": peak_rss_mb()}
    if top_k:
        out["top"] = result.top_k(min(top_k, len(gallery)), verbose=verbose)
    return out


def format_outcome(outcome: dict, ranks=(1, 5, 10)) -> str:
    cmc = outcome["cmc"]
    shown = ", ".join(f"rank-{r} {100 * cmc[r - 1]:.2f}%" for r in ranks if r <= len(cmc))
    return (f"{outcome['method']} {outcome['params']} on {outcome['features']} ({outcome['num_query']} queries x "
            f"{outcome['num_gallery']} gallery, protocol {outcome['protocol']}): mAP {100 * outcome['mAP']:.2f}%, "
            f"mINP {100 * outcome['mINP']:.2f}%, {shown}; re-ranking {outcome['seconds_rerank']:.2f} s + evaluation "
            f"{outcome['seconds_evaluate']:.2f} s, peak memory {outcome['peak_rss_mb']:.0f} MB")


def write_top_list(path: str, features: feature_files.FeatureSet, distances: np.ndarray, indices: np.ndarray) -> str:
    """The ranked lists as .npz: `indices` into the gallery rows, `distances`, and the paths and pids of both sets."""
    query = features.split == feature_files.SPLIT_CODES["query"]
    gallery = features.split == feature_files.SPLIT_CODES["gallery"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, indices=indices, distances=distances, query_path=features.path[query],
             gallery_path=features.path[gallery], query_pid=features.pid[query], gallery_pid=features.pid[gallery])
    return path
