"""Re-ranking a feature file with any registered method and evaluating it: what `acp-rerank` (`acp.rerank_cli`),
the experiment runners and the demo run.

Methods are those of `rerank.registry` (`method_names()`): `none` (alias `baseline`: the original distances under
`metric`), every classic re-ranker of `rerank.METHODS` with its own defaults, `acp` (`acp.acp_rerank`, imported
when first asked for; Eq. 1 with a trained ACP model; parameters k1 (default N/C of the gallery), k2 (6),
batch_size, chunk_size), and any method a user registers.

Parameters (`resolve_params`): the outcome's "params" hold every parameter the method ran with, defaults
included, as it used them. Values derived from N/C (ACP's k1; with `table_iv_neighbourhood` every method's
first-order k / k1, `Reranker.first_order`) are at least `rerank.neighbourhood.MIN_K1` = 2: on a gallery of one
image per identity N/C is 1, and a neighbourhood of the image alone makes ACP, AQE and alpha-QE return the baseline
unchanged. A k2 above k1 (GNN's default 7 under a small k1; ACP's 6) is lowered to k1, as both methods' message
passing / refinement reads k2 of the k1 neighbours. Each such change, and a given neighbourhood of 1 for the
expansion methods, is a line in the outcome's "notes", logged as a warning.

`evaluate_method` returns mAP, mINP, the CMC, the number of queries, the re-ranking wall time (`seconds_rerank`: the
method's neighbour search and state; `seconds_evaluate`: the exact evaluation, which also produces the re-ranked
distances block by block and so is part of the cost of the lazy methods) and the process's peak resident memory
(`peak_rss_mb`, the kernel's high-water mark, TensorFlow's own footprint included).

Search mode: when the query or the gallery rows have no labels (`FeatureSet.labelled` false, e.g. the features of
a folder of crops), nothing is evaluated: the outcome says `"labelled": false` and has no metrics, and the ranked
lists (`top_k`) are the result, written by `write_top_list` as ranking files (`rerank.rankings`: per query the
top-k gallery items with their image paths and distances, and whether each is a match when labels exist).
Parameters derived from N/C need the gallery's identities, so in search mode they must be given.

The evaluation protocol is the one the feature file records (`protocol`: written from the dataset reader's
`Record.protocol` by `acp-extract`, or given to `acp-import-features`) unless one is passed. A file that records
none (format version 1, or imported without one) is evaluated with DEFAULT_PROTOCOL, and the outcome's notes say so.
"""
from __future__ import annotations

import resource
import time

import numpy as np
from absl import logging

from rerank import rankings, registry
from rerank.evaluation import evaluate_reranked
from rerank.neighbourhood import default_k1, k1_floor_note

DEFAULT_PROTOCOL = "market1501"  # for feature files that record none


def method_names() -> tuple[str, ...]:
    """The methods that can run now (`rerank.registry.names()`)."""
    return registry.names()


def default_params(method: str) -> dict:
    """Every parameter of `method` with its default (None: derived from N/C of the gallery)."""
    return dict(registry.get(method).defaults)


def resolve_params(method: str, params: dict, gallery_pids, table_iv: bool = False) -> tuple[dict, list[str]]:
    """(every parameter `method` runs with, the notes on values changed or suspicious); see the module docstring.

    `params` are the given ones: they win over N/C and the defaults, except that a default or derived k2 above k1
    is lowered to k1. Unknown parameters are a ValueError naming them and the known ones. `gallery_pids` None: an
    unlabelled gallery (search mode), where a parameter derived from N/C is a ValueError asking for it.
    """
    reranker = registry.get(method)
    defaults = dict(reranker.defaults)
    if not defaults and params:
        raise ValueError(f"--method={method} takes no parameters, got {sorted(params)}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"--method={method}: unknown parameter(s) {unknown}; known: {list(defaults)}")
    resolved, notes = {**defaults, **params}, []
    for name in reranker.first_order:
        if name not in params and (table_iv or resolved[name] is None):
            if gallery_pids is None:
                raise ValueError(f"--method={method}: {name} defaults to N/C, gallery images per identity, but the "
                                 f"gallery has no labels (search mode); give it, e.g. --param={name}=20")
            resolved[name] = default_k1(gallery_pids)
            note = k1_floor_note(name, gallery_pids)
            if note:
                notes.append(note)
    if reranker.unchanged_at_one and params.get(reranker.unchanged_at_one) == 1:
        notes.append(f"{reranker.unchanged_at_one}=1 (given): a neighbourhood of the image itself leaves every "
                     "embedding unchanged; this expansion returns the baseline")
    if reranker.k2_within_k1 and resolved["k2"] > resolved["k1"]:
        if not (reranker.checks_given_k2 and "k2" in params and "k1" in params):  # else the method names both
            notes.append(f"k2={resolved['k1']}: {'the given' if 'k2' in params else 'the default'} "
                         f"k2={resolved['k2']} exceeds k1={resolved['k1']}, and k2 counts the strongest of the k1 "
                         "neighbours; lowered to k1")
            resolved["k2"] = resolved["k1"]
    return resolved, notes


def run_method(query, gallery, method: str, params: dict, model=None, metric: str = "cosine",
               verbose: int = 0) -> tuple:
    """Re-rank `query` x `gallery` rows (of a feature file) with `method`; returns (distances, every parameter it
    ran with: `resolve_params` of `params`, plus the metric when the method uses it).

    `model` is the trained model of a method that needs one (ACP). Errors (unknown method or parameter, k1 beyond
    the set, non-finite features, dimension mismatches) are ValueErrors naming the culprit.
    """
    if not len(query) or not len(gallery):
        raise ValueError(f"{query.origin}: needs query and gallery rows, has {len(query)} and {len(gallery)}")
    reranker = registry.get(method)
    if reranker.needs_model and model is None:
        raise ValueError(f"--method={method} needs a trained model: pass --checkpoint (an acp-train --train_dir)")
    params, _ = resolve_params(method, params, gallery.pid if gallery.labelled else None)
    result = reranker.run(query, gallery, params, model=model, metric=metric, verbose=verbose)
    return result, ({**params, "metric": metric} if reranker.uses_metric else params)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate_method(features, method: str, params: dict | None = None, model=None,
                    metric: str = "cosine", protocol: str | None = None, max_rank: int = 50,
                    table_iv_neighbourhood: bool = False, top_k: int = 0, verbose: int = 0) -> dict:
    """Re-rank and evaluate; the dict `acp-rerank` prints and writes (see the module docstring): "params" (every
    parameter used), "notes" (why some differ from N/C or the defaults), "table_iv_neighbourhood", "labelled", the
    metrics (labelled sets only: search mode evaluates nothing) and costs, plus "top" = (distances, indices) of the
    first `top_k` gallery items per query when `top_k` > 0."""
    query, gallery = features.query, features.gallery
    labelled = query.labelled and gallery.labelled
    params, notes = resolve_params(method, params or {}, gallery.pid if gallery.labelled else None,
                                   table_iv_neighbourhood)
    for note in notes:
        logging.warning("%s: %s", method, note)
    if labelled and not (protocol or features.protocol):
        notes.append(f"{features.origin} records no evaluation protocol (format version 1, or imported without "
                     f"--protocol): evaluated with {DEFAULT_PROTOCOL}; pass --protocol to choose")
        logging.warning("%s", notes[-1])
    protocol = protocol or features.protocol or DEFAULT_PROTOCOL
    start = time.perf_counter()
    result, used = run_method(query, gallery, method, params, model, metric, verbose)
    rerank_seconds = time.perf_counter() - start
    out = {"method": method, "params": used, "notes": notes, "table_iv_neighbourhood": table_iv_neighbourhood,
           "protocol": protocol, "dataset": features.dataset, "dataset_split": features.dataset_split,
           "features": features.origin, "num_query": len(query), "num_gallery": len(gallery), "labelled": labelled}
    if labelled:
        metrics = evaluate_reranked(result, query.pid, gallery.pid, query.camid, gallery.camid,
                                    protocol=protocol, max_rank=max_rank, verbose=verbose)
        out.update({"mAP": float(metrics["mAP"]), "mINP": float(metrics["mINP"]),
                    "cmc": [float(v) for v in metrics["cmc"]], "num_queries": int(metrics["num_queries"]),
                    "num_skipped": int(metrics["num_skipped"])})
    out.update(seconds_rerank=rerank_seconds, seconds_evaluate=time.perf_counter() - start - rerank_seconds,
               peak_rss_mb=peak_rss_mb())
    if top_k:
        out["top"] = result.top_k(min(top_k, len(gallery)), verbose=verbose)
    return out


def format_outcome(outcome: dict, ranks=(1, 5, 10)) -> str:
    head = (f"{outcome['method']} {outcome['params']} on {outcome['features']} ({outcome['num_query']} queries x "
            f"{outcome['num_gallery']} gallery")
    if not outcome["labelled"]:
        return (f"{head}, search mode: no labels, nothing evaluated): re-ranking {outcome['seconds_rerank']:.2f} s, "
                f"peak memory {outcome['peak_rss_mb']:.0f} MB")
    cmc = outcome["cmc"]
    shown = ", ".join(f"rank-{r} {100 * cmc[r - 1]:.2f}%" for r in ranks if r <= len(cmc))
    return (f"{head}, protocol {outcome['protocol']}): mAP {100 * outcome['mAP']:.2f}%, "
            f"mINP {100 * outcome['mINP']:.2f}%, {shown}; re-ranking {outcome['seconds_rerank']:.2f} s + evaluation "
            f"{outcome['seconds_evaluate']:.2f} s, peak memory {outcome['peak_rss_mb']:.0f} MB")


def write_top_list(paths, features, distances: np.ndarray, indices: np.ndarray,
                   meta: dict | None = None) -> list[str]:
    """The ranked lists (`top` of `evaluate_method`) of a feature file's (`features.feature_file.FeatureSet`) query
    rows as ranking files, one per path, each in the format of its extension (`rerank.rankings`: .json, .csv, .npz;
    atomic): per query the first gallery items with their image paths and distances, and their labels and match
    flags when query and gallery are labelled. `meta` (e.g. the method and its parameters) goes into the JSON.
    Every path's extension is checked before anything is written. Returns the paths written."""
    for path in paths:
        rankings.check_extension(path, "--top_list file")
    query, gallery = features.query, features.gallery
    labels = {}
    if query.labelled and gallery.labelled:
        labels = dict(query_pid=query.pid, query_camid=query.camid, gallery_pid=gallery.pid,
                      gallery_camid=gallery.camid)
    ranking = rankings.from_top(indices, distances, query.path, gallery.path, **labels,
                                meta={"features": features.origin, **(meta or {})})
    return [rankings.write(path, ranking) for path in paths]
