"""Re-ranking a feature file with any method and evaluating it: what `acp-rerank` (`acp.rerank_cli`) and the demo
run.

Methods (`METHOD_NAMES`): `none` (alias `baseline`: the original distances under `metric`), `acp` (Eq. 1 with a
trained ACP model, `acp.acp_rerank`; parameters k1 (default N/C of the gallery), k2 (6), batch_size, chunk_size)
and every classic re-ranker of `rerank.METHODS` with its own defaults.

Parameters (`resolve_params`): the outcome's "params" hold every parameter the method ran with, defaults
included, as it used them. Values derived from N/C (ACP's k1; with `table_iv_neighbourhood` every method's
first-order k / k1) are at least `acp_rerank.MIN_K1` = 2: on a gallery of one image per identity N/C is 1, and a
neighbourhood of the image alone makes ACP, AQE and alpha-QE return the baseline unchanged. A k2 above k1 (GNN's
default 7 under a small k1; ACP's 6) is lowered to k1, as both methods' message passing / refinement reads k2 of
the k1 neighbours. Each such change, and a given k / k1 of 1 for the expansion methods, is a line in the outcome's
"notes", logged as a warning.

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
import resource
import time

import numpy as np
from absl import logging

import rerank
from acp import acp_rerank
from engine import atomic
from features import feature_file as feature_files
from rerank.neighbours import DEFAULT_CHUNK_SIZE

BASELINE_METHODS = ("none", "baseline")
METHOD_NAMES = BASELINE_METHODS + ("acp",) + tuple(rerank.METHODS)
# Records of these datasets evaluate with another protocol than market1501 (their readers in data.datasets).
PROTOCOL_BY_DATASET = {"vehicleid": "vehicleid", "cuhk01": "single_shot", "cuhk03_labeled": "single_shot",
                       "cuhk03_detected": "single_shot"}
# The parameters that set each method's first-order neighbourhood, which ACP Table IV sets to N/C.
FIRST_ORDER_PARAMS = {"aqe": ("k",), "alpha_qe": ("k",), "k_reciprocal": ("k1",), "alpha_qe_k_reciprocal": ("k", "k1"),
                      "sca": ("k1",), "gnn": ("k1",), "acp": ("k1",)}
# Methods whose neighbourhood of 1 (the image itself) returns every embedding unchanged, by that parameter.
UNCHANGED_AT_ONE = {"aqe": "k", "alpha_qe": "k", "alpha_qe_k_reciprocal": "k", "acp": "k1"}
# Methods whose k2 counts some of the k1 neighbours (message passing, refinement), so k2 <= k1.
K2_WITHIN_K1 = ("gnn", "acp")


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


def default_params(method: str) -> dict:
    """Every parameter of `method` with its default (ACP's k1: None, i.e. N/C of the gallery)."""
    if method in BASELINE_METHODS:
        return {}
    if method == "acp":
        return {"k1": None, "k2": acp_rerank.DEFAULT_K2, "batch_size": acp_rerank.DEFAULT_BATCH_SIZE,
                "chunk_size": DEFAULT_CHUNK_SIZE}
    if method not in rerank.METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHOD_NAMES)}")
    parameters = inspect.signature(rerank.METHODS[method]).parameters
    return {name: parameter.default for name, parameter in parameters.items()
            if name not in ("query", "gallery", "verbose")}


def resolve_params(method: str, params: dict, gallery_pids, table_iv: bool = False) -> tuple[dict, list[str]]:
    """(every parameter `method` runs with, the notes on values changed or suspicious); see the module docstring.

    `params` are the given ones: they win over N/C and the defaults, except that a default or derived k2 above k1
    is lowered to k1. Unknown parameters are a ValueError naming them and the known ones.
    """
    defaults = default_params(method)
    if method in BASELINE_METHODS and params:
        raise ValueError(f"--method={method} takes no parameters, got {sorted(params)}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"--method={method}: unknown parameter(s) {unknown}; known: {list(defaults)}")
    resolved, notes = {**defaults, **params}, []
    for name in FIRST_ORDER_PARAMS.get(method, ()):
        if name not in params and (table_iv or resolved[name] is None):
            resolved[name] = acp_rerank.default_k1(gallery_pids)
            note = acp_rerank.k1_floor_note(name, gallery_pids)
            if note:
                notes.append(note)
    if params.get(UNCHANGED_AT_ONE.get(method)) == 1:
        notes.append(f"{UNCHANGED_AT_ONE[method]}=1 (given): a neighbourhood of the image itself leaves every "
                     "embedding unchanged; this expansion returns the baseline")
    if method in K2_WITHIN_K1 and resolved["k2"] > resolved["k1"]:
        if "k2" in params and "k1" in params and method == "gnn":
            pass  # both given: gnn's own check names the contradiction
        else:
            notes.append(f"k2={resolved['k1']}: {'the given' if 'k2' in params else 'the default'} "
                         f"k2={resolved['k2']} exceeds k1={resolved['k1']}, and k2 counts the strongest of the k1 "
                         "neighbours; lowered to k1")
            resolved["k2"] = resolved["k1"]
    return resolved, notes


def run_method(query: feature_files.FeatureSet, gallery: feature_files.FeatureSet, method: str, params: dict,
               model=None, metric: str = "cosine", verbose: int = 0) -> tuple[rerank.RerankedDistances, dict]:
    """Re-rank `query` x `gallery` rows (of a feature file) with `method`; returns (distances, every parameter it
    ran with: `resolve_params` of `params`, plus the metric of `none` and `acp`).

    `model` is the ACP model for method "acp". Errors (unknown method or parameter, k1 beyond the set, non-finite
    features, dimension mismatches) are ValueErrors naming the culprit.
    """
    if not len(query) or not len(gallery):
        raise ValueError(f"{query.origin}: needs query and gallery rows, has {len(query)} and {len(gallery)}")
    if method == "acp" and model is None:
        raise ValueError("--method=acp needs a trained model: pass --checkpoint (an acp-train --train_dir)")
    params, _ = resolve_params(method, params, gallery.pid)
    if method in BASELINE_METHODS:
        query_embedding, gallery_embedding = rerank.check_features(query.embedding, gallery.embedding)
        return rerank.RerankedDistances(query_embedding, gallery_embedding, metric), {"metric": metric}
    if method == "acp":
        result, _ = acp_rerank.rerank_feature_sets(query, gallery, model, metric=metric, verbose=verbose, **params)
        return result, {**params, "metric": metric}
    return rerank.rerank(method, query.embedding, gallery.embedding, verbose=verbose, **params), params


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate_method(features: feature_files.FeatureSet, method: str, params: dict | None = None, model=None,
                    metric: str = "cosine", protocol: str | None = None, max_rank: int = 50,
                    table_iv_neighbourhood: bool = False, top_k: int = 0, verbose: int = 0) -> dict:
    """Re-rank and evaluate; the dict `acp-rerank` prints and writes (see the module docstring): "params" (every
    parameter used), "notes" (why some differ from N/C or the defaults), "table_iv_neighbourhood", the metrics and
    costs, plus "top" = (distances, indices) of the first `top_k` gallery items per query when `top_k` > 0."""
    query, gallery = features.query, features.gallery
    params, notes = resolve_params(method, params or {}, gallery.pid, table_iv_neighbourhood)
    for note in notes:
        logging.warning("%s: %s", method, note)
    protocol = protocol or protocol_for(features.dataset)
    start = time.perf_counter()
    result, used = run_method(query, gallery, method, params, model, metric, verbose)
    rerank_seconds = time.perf_counter() - start
    metrics = rerank.evaluate_reranked(result, query.pid, gallery.pid, query.camid, gallery.camid,
                                       protocol=protocol, max_rank=max_rank, verbose=verbose)
    evaluate_seconds = time.perf_counter() - start - rerank_seconds
    out = {"method": method, "params": used, "notes": notes, "table_iv_neighbourhood": table_iv_neighbourhood,
           "protocol": protocol, "dataset": features.dataset,
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
    """The ranked lists as .npz: `indices` into the gallery rows, `distances`, and the paths, pids and camids of both
    sets (what `reid-visrank` draws)."""
    query = features.split == feature_files.SPLIT_CODES["query"]
    gallery = features.split == feature_files.SPLIT_CODES["gallery"]
    with atomic.atomic_path(path) as temporary:
        np.savez(temporary, indices=indices, distances=distances, query_path=features.path[query],
                 gallery_path=features.path[gallery], query_pid=features.pid[query],
                 gallery_pid=features.pid[gallery], query_camid=features.camid[query],
                 gallery_camid=features.camid[gallery])
    return path
