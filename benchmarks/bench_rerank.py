"""bench_rerank: time and peak memory of the classic re-rankers (`rerank`) against N = query + gallery size.

Embeddings are `rerank.synthetic.clustered_embeddings` (2048-d by default, --images_per_identity images per
identity, the first of each identity a query; --noise=3.0 at 2048-d, or 1.3 at 128-d, gives a baseline mAP of about
55%, like MSMT17's). Each method is timed end to end: its neighbour pass and sparse state ("rerank_s"), then
every re-ranked distance block fed to the Market-1501 evaluation ("evaluate_s"); "peak_extra_mb" is the resident
memory above what the embeddings already hold. Up to --dense_max, the dense reference ports of the test suite
(k-reciprocal as torchreid's `re_ranking` computes it, with N x N float32 matrices; GNN re-ranking with dense
N x N adjacency) run as the comparison point. At 2048-d the O(N^2 d) neighbour pass dominates every method; a
lower --dim measures the sparse stages at large N in minutes.

    python -m benchmarks.bench_rerank --sizes=10000 --dense_max=10000
    python -m benchmarks.bench_rerank --sizes=50000 --methods=k_reciprocal,gnn --append
    python -m benchmarks.bench_rerank --sizes=100000 --dim=128 --noise=1.3 --dense_max=0 --append
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import rerank  # noqa: E402
from benchmarks import harness, rerank_common  # noqa: E402
from engine import cli  # noqa: E402
from rerank import knn, reference  # noqa: E402
from rerank.evaluation import evaluate_features  # noqa: E402
from rerank.synthetic import clustered_embeddings  # noqa: E402

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
rerank_common.define_flags(FLAGS, "rerank", "Seed of the synthetic embeddings.",
                           "Rows per chunk of every neighbour pass.")
flags.DEFINE_integer("dim", 2048, "Embedding width.", flag_values=FLAGS)
flags.DEFINE_list("methods", sorted(rerank.METHODS), "Re-rankers to time (names of rerank.METHODS).", flag_values=FLAGS)
flags.DEFINE_integer("dense_max", 5000, "Largest N at which the dense reference ports also run (0: never).",
                     flag_values=FLAGS)

NAME = "rerank"


def _row(n, data, method, implementation, timing):
    metrics = timing["metrics"]
    return {"N": n, "queries": len(data.query), "gallery": len(data.gallery), "dim": data.query.shape[1],
            "noise": FLAGS.noise, "method": method, "implementation": implementation,
            "rerank_s": timing["rerank_s"], "evaluate_s": timing["evaluate_s"], "total_s": timing["total_s"],
            "peak_extra_mb": timing["peak_extra_mb"], "mAP": round(100 * metrics["mAP"], 2),
            "rank1": round(100 * float(metrics["cmc"][0]), 2), "onednn": harness.onednn_setting()}


def _dense_ports(data):
    """The dense reference implementations of `rerank.reference`, as (name, fn -> dense distmat)."""

    def k_reciprocal():
        q, g = data.query, data.gallery
        return reference.dense_k_reciprocal(knn.pairwise_distance(q, g), knn.pairwise_distance(q, q),
                                            knn.pairwise_distance(g, g))

    def gnn():
        return 1.0 - reference.dense_gnn(data.query, data.gallery, 26, 7)

    return [("k_reciprocal", k_reciprocal), ("gnn", gnn)]


def benchmark_size(n: int) -> list[dict]:
    data = clustered_embeddings(n, FLAGS.dim, FLAGS.images_per_identity, noise=FLAGS.noise, seed=FLAGS.seed)
    labels = (data.q_pids, data.g_pids, data.q_camids, data.g_camids)
    start = time.perf_counter()
    baseline = evaluate_features(data.query, data.gallery, *labels)
    baseline_s = round(time.perf_counter() - start, 2)
    rows = [_row(n, data, "baseline", "original distances", {"rerank_s": 0.0, "evaluate_s": baseline_s,
                                                            "total_s": baseline_s, "peak_extra_mb": 0.0,
                                                            "metrics": baseline})]
    print(f"N={n}: baseline mAP {100 * baseline['mAP']:.2f}")
    for method in FLAGS.methods:
        timing = rerank_common.timed(lambda: rerank.rerank(method, data.query, data.gallery,
                                                           chunk_size=FLAGS.chunk_size, verbose=int(FLAGS.verbose)),
                                     labels, FLAGS.verbose)
        rows.append(_row(n, data, method, "sparse (rerank)", timing))
        print(rows[-1])
    if n <= FLAGS.dense_max:
        for method, port in _dense_ports(data):
            if method in FLAGS.methods:
                timing = rerank_common.timed(port, labels, FLAGS.verbose)
                rows.append(_row(n, data, method, "dense reference port", timing))
                print(rows[-1])
    return rows


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.methods) - set(rerank.METHODS))
    if unknown:
        raise app.UsageError(f"--methods: unknown {unknown}; expected names of {sorted(rerank.METHODS)}")
    rows = []
    for size in FLAGS.sizes:
        rows += benchmark_size(int(size))
    meta = {"images_per_identity": FLAGS.images_per_identity, "chunk_size": FLAGS.chunk_size,
            "seed": FLAGS.seed, "parameters": "each method's defaults (rerank docstring)"}
    rerank_common.write(FLAGS, NAME, rows, ("N", "dim", "method", "implementation"), meta,
                        "Classic re-rankers: time and peak memory against N")

if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
