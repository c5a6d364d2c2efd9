"""bench_acp_rerank: time and peak memory of ACP re-ranking (`acp.acp_rerank`, Eq. 1) against N = query + gallery size.

Embeddings are `rerank.synthetic.clustered_embeddings` (2048-d, --images_per_identity images per identity);
the multi-block features ACP reads are derived from them (f3 = the first 512 dimensions, f4 the next 1024, f5 the
embedding), so N x (2048 + 3584) floats are held. The ACP model has the --preset's architecture with untrained
weights: the figures are about cost, not accuracy (the mAP column shows that the pipeline ran, nothing more).
Timed end to end like `bench_rerank`: the kNN pass, ACP on all N sequences and the expansion ("rerank_s"), then
every re-ranked distance block fed to the Market-1501 evaluation ("evaluate_s"); "peak_extra_mb" is the resident
memory above what the embeddings and features already hold. Runs on the GPU by itself when TensorFlow sees one.

    python -m benchmarks.bench_acp_rerank                              # small default, about a minute
    python -m benchmarks.bench_acp_rerank --sizes=10000,50000,100000
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from acp import acp_rerank  # noqa: E402
from acp import model as acp_model  # noqa: E402
from benchmarks import harness, rerank_common  # noqa: E402
from engine import cli  # noqa: E402
from rerank import neighbourhood  # noqa: E402
from rerank.synthetic import clustered_embeddings  # noqa: E402

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
rerank_common.define_flags(FLAGS, "acp_rerank", "Seed of the synthetic embeddings and of the untrained weights.",
                           "Rows per chunk of the neighbour pass and the expansion.")
flags.DEFINE_enum("preset", "basic", sorted(acp_model.PRESETS), "ACP preset (Table II).", flag_values=FLAGS)
flags.DEFINE_integer("k1", 0, "Neighbourhood size; 0: N/C of the synthetic gallery (rerank.neighbourhood.default_k1).",
                     flag_values=FLAGS)
flags.DEFINE_integer("k2", acp_rerank.DEFAULT_K2, "Refinement length.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", acp_rerank.DEFAULT_BATCH_SIZE, "Sequences per ACP call.", flag_values=FLAGS)

NAME = "acp_rerank"
BLOCK_SLICES = {"f3": slice(0, 512), "f4": slice(512, 1536), "f5": slice(0, 2048)}


def multi_block(embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Stand-ins for f3/f4/f5 of the right widths, cut from the 2048-d embeddings."""
    return {name: np.ascontiguousarray(embeddings[:, part]) for name, part in BLOCK_SLICES.items()}


def benchmark_size(n: int, model: keras.Model) -> dict:
    data = clustered_embeddings(n, 2048, FLAGS.images_per_identity, noise=FLAGS.noise, seed=FLAGS.seed)
    labels = (data.q_pids, data.g_pids, data.q_camids, data.g_camids)
    query_inputs, gallery_inputs = multi_block(data.query), multi_block(data.gallery)
    k1 = FLAGS.k1 or neighbourhood.default_k1(data.g_pids)
    timing = rerank_common.timed(
        lambda: acp_rerank.acp_rerank(data.query, data.gallery, model, k1, FLAGS.k2, query_inputs, gallery_inputs,
                                      batch_size=FLAGS.batch_size, chunk_size=FLAGS.chunk_size,
                                      verbose=int(FLAGS.verbose)), labels, FLAGS.verbose)
    metrics = timing.pop("metrics")
    row = {"N": n, "queries": len(data.query), "gallery": len(data.gallery), "dim": 2048, "preset": FLAGS.preset,
           "k1": k1, "k2": FLAGS.k2, "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
           **timing, "mAP_untrained": round(100 * metrics["mAP"], 2), "onednn": harness.onednn_setting()}
    print(row)
    return row


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    model = acp_model.build_acp(FLAGS.preset)
    rows = [benchmark_size(int(size), model) for size in FLAGS.sizes]
    meta = {"images_per_identity": FLAGS.images_per_identity, "noise": FLAGS.noise, "batch_size": FLAGS.batch_size,
            "chunk_size": FLAGS.chunk_size, "seed": FLAGS.seed,
            "weights": "untrained (timing only); multi-block features cut from the embeddings"}
    rerank_common.write(FLAGS, NAME, rows, ("N", "preset", "device"), meta,
                        "ACP re-ranking (Eq. 1): time and peak memory against N")

if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
