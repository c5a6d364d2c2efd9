"""What the two re-ranking benchmarks (`bench_rerank`, `bench_acp_rerank`) share: the flags of the synthetic
embeddings and of the results file, the timing of one re-ranking followed by its evaluation, and writing the rows
(merged into the committed table with --append)."""
from __future__ import annotations

import time
from typing import Callable

from absl import flags

from benchmarks import harness
from rerank import RerankedDistances, evaluate_reranked


def define_flags(fv: flags.FlagValues, name: str, seed_help: str, chunk_help: str) -> None:
    """Declare --sizes, --images_per_identity, --noise, --chunk_size, --seed, --append, --verbose, --out_dir in a
    benchmark's own flags `fv` (`engine.cli.new_flags()`)."""
    flags.DEFINE_list("sizes", ["2000"], "N = query + gallery embeddings, one run per size.", flag_values=fv)
    flags.DEFINE_integer("images_per_identity", 10, "Images per identity (N / C).", flag_values=fv)
    flags.DEFINE_float("noise", 3.0, "Per-image noise of the synthetic embeddings (sets the baseline mAP).",
                       flag_values=fv)
    flags.DEFINE_integer("chunk_size", 512, chunk_help, flag_values=fv)
    flags.DEFINE_integer("seed", 0, seed_help, flag_values=fv)
    flags.DEFINE_boolean("append", False, "Add to (replace matching rows of) the existing results instead of "
                                          "overwriting them.", flag_values=fv)
    flags.DEFINE_boolean("verbose", True, "Progress bars.", flag_values=fv)
    flags.DEFINE_string("out_dir", None, f"Where {name}.json / .md go (default benchmarks/results).", flag_values=fv)


def timed(run_method: Callable[[], RerankedDistances], labels, verbose: bool) -> dict:
    """Time run_method() -> distances, then their evaluation under the Market-1501 protocol.

    Returns {"rerank_s", "evaluate_s", "total_s", "peak_extra_mb"} (rounded) and "metrics".
    """
    out = {}

    def work():
        start = time.perf_counter()
        distances = run_method()
        out["rerank_s"] = time.perf_counter() - start
        out["metrics"] = evaluate_reranked(distances, *labels, verbose=int(verbose))
        out["evaluate_s"] = time.perf_counter() - start - out["rerank_s"]

    peak_mb = harness.measure(work)["peak_extra_mb"]
    return {"rerank_s": round(out["rerank_s"], 2), "evaluate_s": round(out["evaluate_s"], 2),
            "total_s": round(out["rerank_s"] + out["evaluate_s"], 2), "peak_extra_mb": round(peak_mb, 1),
            "metrics": out["metrics"]}


def write(fv: flags.FlagValues, name: str, rows: list[dict], key: tuple[str, ...], meta: dict, title: str) -> None:
    """Write the rows to --out_dir (with --append, merged with the existing table by `key`), sorted by `key`."""
    if fv.append:
        rows = harness.merge_with_previous(name, rows, key, fv.out_dir)
    rows = sorted(rows, key=lambda row: tuple(row[k] for k in key))
    print("wrote", *harness.write_results(name, rows, meta, title, fv.out_dir))
