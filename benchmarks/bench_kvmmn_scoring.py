"""bench_kvmmn_scoring: KVM-MN scoring speed, pairs per second of the cached scorer (`KVMMN.score`) against the
per-pair forward (`KVMMN.score_pairs`), both from precomputed memories (the score head only: Eq. 3-6, no backbone).

The paper reports 2.1 ms per pair on a GTX 1080 Ti (Sec. "Experiments"), for d = 512, H = 4, d_k = d_v = 64 and
a 14x7 feature map, the defaults here. TensorFlow runs on a GPU by itself when one is visible.

    python -m benchmarks.bench_kvmmn_scoring                      # the paper's sizes, 256 gallery images
    python -m benchmarks.bench_kvmmn_scoring --gallery_size=32    # a quick check
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import flags

from benchmarks.harness import measure, write_results
from engine import cli
from kvmmn.model import BACKBONE_STRIDE, KVMMN, KVMMNConfig

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
flags.DEFINE_integer("gallery_size", 256, "Gallery memories scored against one query (= pairs per timed run).",
                     flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 64, "Pairs computed at once (the gallery chunk of `score`).", flag_values=FLAGS)
flags.DEFINE_integer("feature_dim", 512, "d (Table 1: 512).", flag_values=FLAGS)
flags.DEFINE_integer("num_heads", 4, "H (Table 1: 4).", flag_values=FLAGS)
flags.DEFINE_integer("key_dim", 64, "d_k (Table 1: 64).", flag_values=FLAGS)
flags.DEFINE_integer("value_dim", 64, "d_v (Table 1: 64).", flag_values=FLAGS)
flags.DEFINE_integer("score_hidden_units", 512, "Hidden width of Eq. 6's FFN.", flag_values=FLAGS)
flags.DEFINE_list("feature_shape", ["14", "7"], "rows,cols of the feature map (224x112 inputs give 14x7).",
                  flag_values=FLAGS)
flags.DEFINE_integer("repeats", 3, "Timed runs per method (the best is reported).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the weights and of the random memories.", flag_values=FLAGS)
flags.DEFINE_string("out_dir", None, "Where kvmmn_scoring.json/.md go (default benchmarks/results).", flag_values=FLAGS)


def random_memories(model: KVMMN, count: int, seed: int) -> dict:
    """Memories as `model.embed` makes them, from random non-negative (post-ReLU) keys and values."""
    rng = np.random.default_rng(seed)
    spec = model.memory_signature()
    keys, values = (tf.constant(np.abs(rng.normal(size=(count, *spec[name].shape[1:]))).astype("float32"))
                    for name in ("keys", "values"))
    return {"keys": keys, "values": values, "reference_comparison": model.reference_comparison(keys, values)}


def benchmark(gallery_size: int, batch_size: int, repeats: int, config: KVMMNConfig, seed: int = 0):
    """Times both scorers on one query against `gallery_size` memories; returns (rows, largest |difference|)."""
    model = KVMMN(config)
    query, gallery = random_memories(model, 1, seed), random_memories(model, gallery_size, seed + 1)

    cached = tf.function(lambda: model.score(query, gallery, gallery_batch_size=batch_size)[0])

    @tf.function
    def naive():
        # The per-pair forward recomputes the query's side of Eq. 3-5 for every pair, as a plain pair model would.
        chunks = []
        for start in range(0, gallery_size, batch_size):
            count = min(batch_size, gallery_size - start)
            pairs_a = {name: tf.repeat(query[name], count, axis=0) for name in ("keys", "values")}
            pairs_b = {name: gallery[name][start:start + count] for name in ("keys", "values")}
            chunks.append(model.score_pairs(pairs_a, pairs_b))
        return tf.concat(chunks, axis=0)

    difference = float(tf.reduce_max(tf.abs(cached() - naive())))
    rows = []
    for method, fn in (("cached (KVMMN.score)", cached), ("per pair (KVMMN.score_pairs)", naive)):
        timing = measure(lambda: fn().numpy(), repeats=repeats, warmup=1)
        seconds = timing["seconds_best"]
        rows.append({"method": method, "pairs": gallery_size, "seconds_best": seconds,
                     "pairs_per_s": gallery_size / seconds, "ms_per_pair": 1000.0 * seconds / gallery_size,
                     "peak_extra_mb": timing["peak_extra_mb"]})
    return rows, difference


def main(argv):
    del argv
    rows, cols = (int(s) for s in FLAGS.feature_shape)
    config = KVMMNConfig(backbone="tiny", image_size=(rows * BACKBONE_STRIDE, cols * BACKBONE_STRIDE),
                         feature_dim=FLAGS.feature_dim, num_heads=FLAGS.num_heads, key_dim=FLAGS.key_dim,
                         value_dim=FLAGS.value_dim, score_hidden_units=FLAGS.score_hidden_units, seed=FLAGS.seed)
    results, difference = benchmark(FLAGS.gallery_size, FLAGS.batch_size, FLAGS.repeats, config, FLAGS.seed)
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or ["CPU"]
    meta = {"device": ", ".join(devices), "feature_shape": f"{rows}x{cols}", "d": config.feature_dim,
            "H": config.num_heads, "d_k": config.key_dim, "d_v": config.value_dim,
            "score_hidden_units": config.score_hidden_units, "batch_size": FLAGS.batch_size,
            "speedup": round(results[1]["seconds_best"] / results[0]["seconds_best"], 2),
            "max_abs_score_difference": difference, "paper": "2.1 ms per pair on one GTX 1080 Ti"}
    json_path, md_path = write_results("kvmmn_scoring", results, meta, out_dir=FLAGS.out_dir,
                                       title="KVM-MN scoring: cached vs per-pair, from precomputed memories")
    for row in results:
        print(f"{row['method']:30s} {row['pairs_per_s']:10.1f} pairs/s  {row['ms_per_pair']:8.3f} ms/pair")
    print(f"speedup {meta['speedup']}x, max |difference| {difference:.2e}; wrote {json_path} and {md_path}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
