"""bench_evaluation: evaluation time and peak memory against gallery size (`data.evaluation`).

Two paths per gallery size: `evaluate_features` (distances computed and evaluated chunk by chunk, the path for
large galleries) and, up to --dense_max_gallery, `evaluate` on a precomputed dense distance matrix (its memory is
not counted: it exists before the call). Identities are clustered like a re-ID test set: about
--images_per_identity gallery images per identity over --num_cameras cameras, a --distractor_fraction of pid-0
distractors, and features drawn around one centre per identity so that true matches rank high.

    python -m benchmarks.bench_evaluation --gallery_sizes=1000,5000 --num_queries=500
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import harness  # noqa: E402
from data import evaluation  # noqa: E402
from engine import cli  # noqa: E402
from rerank import knn  # noqa: E402
from rerank.evaluation import evaluate_features  # noqa: E402

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
flags.DEFINE_list("gallery_sizes", ["1000", "5000", "10000", "20000", "50000", "100000"], "Gallery sizes to time.",
                  flag_values=FLAGS)
flags.DEFINE_integer("num_queries", 3368, "Queries (Market-1501 has 3,368).", flag_values=FLAGS)
flags.DEFINE_integer("feature_dim", 256, "Feature width for the features path.", flag_values=FLAGS)
flags.DEFINE_enum("metric", "euclidean", list(knn.METRICS), "Distance of the features path.", flag_values=FLAGS)
flags.DEFINE_enum("protocol", "market1501", list(evaluation.PROTOCOLS), "Evaluation protocol.", flag_values=FLAGS)
flags.DEFINE_integer("images_per_identity", 20, "Average gallery images per identity.", flag_values=FLAGS)
flags.DEFINE_integer("num_cameras", 6, "Cameras (Market-1501 has 6).", flag_values=FLAGS)
flags.DEFINE_float("distractor_fraction", 0.1, "Fraction of gallery images that are pid-0 distractors.",
                   flag_values=FLAGS)
flags.DEFINE_float("separation", 0.6, "Spread of identity centres relative to the per-image noise (sets mAP).",
                   flag_values=FLAGS)
flags.DEFINE_integer("dense_max_gallery", 20000, "Largest gallery also timed on a dense distance matrix.",
                     flag_values=FLAGS)
flags.DEFINE_integer("repeats", 1, "Timed repeats per measurement (the best is reported).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the random problem.", flag_values=FLAGS)
flags.DEFINE_string("out_dir", None, "Where to write evaluation.json / .md (default benchmarks/results).",
                    flag_values=FLAGS)
flags.register_validator("gallery_sizes", lambda sizes: all(s.isdigit() and int(s) > 0 for s in sizes),
                         "--gallery_sizes must be a comma-separated list of positive integers", flag_values=FLAGS)


def make_problem(num_queries: int, num_gallery: int, feature_dim: int, images_per_identity: int, num_cameras: int,
                 distractor_fraction: float, separation: float, seed: int) -> dict[str, np.ndarray]:
    """Random clustered query / gallery features, pids (gallery pid 0 = distractor) and camera ids.

    Features are an identity centre (standard normal times `separation`) plus standard normal noise.
    """
    rng = np.random.default_rng(seed)
    num_ids = max(1, num_gallery // images_per_identity)
    g_pids = rng.integers(1, num_ids + 1, num_gallery)
    g_pids[rng.random(num_gallery) < distractor_fraction] = 0
    q_pids = rng.integers(1, num_ids + 1, num_queries)
    centres = np.float32(separation) * rng.standard_normal((num_ids + 1, feature_dim), np.float32)
    return {"query_features": centres[q_pids] + rng.standard_normal((num_queries, feature_dim), np.float32),
            "gallery_features": centres[g_pids] + rng.standard_normal((num_gallery, feature_dim), np.float32),
            "q_pids": q_pids, "g_pids": g_pids, "q_camids": rng.integers(0, num_cameras, num_queries),
            "g_camids": rng.integers(0, num_cameras, num_gallery)}


def benchmark_size(num_gallery: int) -> list[dict]:
    problem = make_problem(FLAGS.num_queries, num_gallery, FLAGS.feature_dim, FLAGS.images_per_identity,
                           FLAGS.num_cameras, FLAGS.distractor_fraction, FLAGS.separation, FLAGS.seed)
    labels = [problem[k] for k in ("q_pids", "g_pids", "q_camids", "g_camids")]
    results = {}

    def features_path():
        results["features"] = evaluate_features(
            problem["query_features"], problem["gallery_features"], *labels, metric=FLAGS.metric,
            protocol=FLAGS.protocol)

    paths = [("features", features_path)]
    if num_gallery <= FLAGS.dense_max_gallery:
        distmat = knn.pairwise_distance(problem["query_features"], problem["gallery_features"], FLAGS.metric)

        def dense_path():
            results["dense"] = evaluation.evaluate(distmat, *labels, protocol=FLAGS.protocol)

        paths.append(("dense", dense_path))
    rows = []
    for name, fn in paths:
        cpu_start = time.process_time()
        timing = harness.measure(fn, repeats=FLAGS.repeats, warmup=0)
        cpu_seconds = (time.process_time() - cpu_start) / FLAGS.repeats
        result = results[name]
        rows.append({"path": name, "num_queries": FLAGS.num_queries, "num_gallery": num_gallery,
                     "seconds": timing["seconds_best"], "cpu_seconds": cpu_seconds,
                     "peak_extra_mb": timing["peak_extra_mb"],
                     "rank1": float(result["cmc"][0]), "mAP": result["mAP"], "skipped": result["num_skipped"]})
        print(f"{name:8s} gallery {num_gallery:7d}: {timing['seconds_best']:.2f} s ({cpu_seconds:.2f} s CPU), "
              f"+{timing['peak_extra_mb']:.0f} MB (rank-1 {result['cmc'][0]:.3f}, mAP {result['mAP']:.3f})")
    return rows


def main(argv):
    del argv
    rows = [row for size in FLAGS.gallery_sizes for row in benchmark_size(int(size))]
    meta = {k: getattr(FLAGS, k) for k in ("num_queries", "feature_dim", "metric", "protocol", "images_per_identity",
                                           "num_cameras", "distractor_fraction", "separation", "repeats",
                                           "seed")}
    meta["cpu_seconds"] = "CPU time of the process (all threads) per call, mean over repeats: robust to a busy machine"
    meta["peak_extra_mb"] = ("resident memory above the start of the call (0: it reused memory the process already "
                             "held); dense rows exclude the distance matrix, which exists before the call")
    paths = harness.write_results("evaluation", rows, meta, "Evaluation time and peak memory against gallery size",
                                  FLAGS.out_dir)
    print("wrote", *paths)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
