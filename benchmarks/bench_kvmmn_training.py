"""bench_kvmmn_training: KVM-MN training throughput and evaluation time for a Market-1501-size query / gallery.

Training: images per second of the set-wise training step (`kvmmn.training`: forward of B probes and B x M gallery
images, the B x M pair scores, the set-wise loss with weight decay, backward, SGD update) run by the engine's
training loop on in-memory batches (the input pipeline is not part of it).

Evaluation (`kvmmn.retrieval`) has three parts, each measured on a subset and extrapolated linearly to
--num_query x --num_gallery (Market-1501: 3,368 x 19,732):
  embed: `KVMMN.embed` throughput (images per second) -> seconds for all query and gallery images;
  score: shortlist re-scoring (pairs per second of `Scorer.sets`, K gallery memories per query) -> seconds for
    num_query x K pairs;
  rank + protocol: L2 shortlists, the final rankings and Market-1501's CMC / mAP, measured on --rank_queries
    queries against the full-size gallery of random pooled features.

The model is the paper's (Table 1: Inception V1 to Mixed_4f at 224 x 112, d = 512, H = 4, d_k = d_v = 64) unless
--model=tiny. Runs on the first GPU when one is visible (with the paper's batch, B = 20 and M = 15, unless given),
else on the CPU with a small batch:

    python -m benchmarks.bench_kvmmn_training                                  # about a minute on 2 CPU cores
    python -m benchmarks.bench_kvmmn_training --batch_size=20 --gallery_size=15 --embed_images=256
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import flags

from benchmarks.harness import measure, write_results
from data.evaluation import evaluate
from engine import cli, distribute
from engine.train_loop import LoopConfig, Trainer
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.retrieval import Scorer, ranking_distances
from kvmmn.training import TrainConfig, make_loss_fn, make_optimizer

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
flags.DEFINE_enum("model", "paper", ["paper", "tiny"], "paper: Table 1's model; tiny: the test backbone, d = 32.",
                  flag_values=FLAGS)
flags.DEFINE_integer("batch_size", None, "Combinations per training step (default: 20 on GPU, 2 on CPU).",
                     flag_values=FLAGS)
flags.DEFINE_integer("gallery_size", None, "M (default: 15 on GPU, 4 on CPU).", flag_values=FLAGS)
flags.DEFINE_integer("train_steps", 3, "Timed training steps (after one untimed step).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("embed_images", None, "Images embedded for the embedding rate (default: 256 GPU, 32 CPU).",
                     flag_values=FLAGS)
flags.DEFINE_integer("embed_batch_size", 32, "Images per embedding batch.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("shortlist", 100, "K, gallery images re-scored per query.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("score_queries", None, "Queries whose shortlists are scored for the pair rate (default: 32 GPU, "
                     "2 CPU).", flag_values=FLAGS)
flags.DEFINE_integer("pair_batch_size", 1024, "Pairs scored at once.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("rank_queries", 256, "Queries ranked against the full gallery for the rank + protocol time.",
                     flag_values=FLAGS)
flags.DEFINE_integer("num_query", 3368, "Queries to extrapolate to (Market-1501).", flag_values=FLAGS)
flags.DEFINE_integer("num_gallery", 19732, "Gallery images to extrapolate to (Market-1501).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of weights and inputs.", flag_values=FLAGS)
flags.DEFINE_string("out_dir", None, "Where kvmmn_training.<cpu|gpu>.json/.md go (default benchmarks/results).",
                    flag_values=FLAGS)


def model_config(name: str) -> KVMMNConfig:
    if name == "paper":
        return KVMMNConfig(seed=0)
    return KVMMNConfig(backbone="tiny", image_size=(128, 64), feature_dim=32, num_heads=4, key_dim=8, value_dim=8,
                       score_hidden_units=64, seed=0)


def training_rate(config: KVMMNConfig, batch_size: int, gallery_size: int, steps: int, seed: int) -> dict:
    """Images per second of the training step on one device (Trainer loop, in-memory batches)."""
    height, width = config.image_size
    rng = np.random.default_rng(seed)
    probes = rng.uniform(-1, 1, (batch_size, height, width, 3)).astype("float32")
    galleries = rng.uniform(-1, 1, (batch_size, gallery_size, height, width, 3)).astype("float32")
    labels = rng.integers(0, gallery_size, batch_size).astype("int32")
    batch = tf.data.Dataset.from_tensors(((probes, galleries), labels))
    strategy = distribute.make_strategy("one_device")
    with tempfile.TemporaryDirectory() as train_dir:
        run = TrainConfig(train_dir=train_dir, model=config, batch_size=batch_size, gallery_size=gallery_size,
                          max_steps=1 + steps)
        with strategy.scope():
            model = KVMMN(config)
            optimizer = make_optimizer(run)
        stamps = {}

        def stamp(step, metrics):
            if step in (1, 1 + steps):
                stamps[step] = time.perf_counter()

        # Metrics are fetched (a device sync) at steps 1 and 1 + steps, so the stamps bracket finished work.
        loop = LoopConfig(train_dir, 1 + steps, checkpoint_every=10 ** 9, log_every=1, show_progress=False)
        Trainer(strategy, model, optimizer, loop, loss_fn=make_loss_fn(run, model), hooks=[stamp]).fit(
            lambda start: batch.repeat(1 + steps - start))
    seconds = (stamps[1 + steps] - stamps[1]) / steps
    images = batch_size * (gallery_size + 1)
    return {"part": "train step", "batch": f"B={batch_size}, M={gallery_size}", "seconds_per_step": seconds,
            "images_per_s": images / seconds, "combinations_per_s": batch_size / seconds}


def embedding_rate(model: KVMMN, images: int, batch_size: int, seed: int) -> float:
    height, width = model.config.image_size
    data = tf.random.stateless_uniform((batch_size, height, width, 3), (seed, 1), -1.0, 1.0)
    embed = tf.function(lambda x: model.embed(x))
    batches = max(1, images // batch_size)
    timing = measure(lambda: [embed(data)["keys"].numpy() for _ in range(batches)], repeats=1, warmup=1)
    return batches * batch_size / timing["seconds_best"]


def random_memories(model: KVMMN, count: int, seed: int, fields) -> dict:
    """Memories as `model.embed` makes them, from random non-negative (post-ReLU) values."""
    rng = np.random.default_rng(seed)
    specs = model.memory_signature()
    return {f: np.abs(rng.normal(size=(count, *specs[f].shape[1:]))).astype("float32") for f in fields}


def scoring_rate(model: KVMMN, queries: int, shortlist: int, seed: int) -> float:
    """Pairs per second of shortlist re-scoring (each query against its own K gallery memories)."""
    query = random_memories(model, queries, seed, ("keys", "reference_comparison"))
    gallery = random_memories(model, shortlist, seed + 1, ("keys", "values"))
    index = np.tile(np.arange(shortlist), (queries, 1))
    scorer = Scorer(model)
    timing = measure(lambda: scorer.sets(query, np.arange(queries), gallery, index), repeats=1, warmup=1)
    return queries * shortlist / timing["seconds_best"]


def ranking_seconds(queries: int, num_gallery: int, pooled_dim: int, seed: int) -> float:
    """Seconds of the L2 shortlists, final rankings and Market-1501 protocol of `queries` queries against
    `num_gallery` random pooled features, without the scoring: the tiny model scores a one-image shortlist, and
    every gallery image shares one memory."""
    rng = np.random.default_rng(seed)
    g_pids, g_cams = rng.integers(1, 751, num_gallery), rng.integers(0, 6, num_gallery)
    q_pids, q_cams = g_pids[rng.integers(0, num_gallery, queries)], rng.integers(0, 6, queries)
    tiny = KVMMN(model_config("tiny"))
    query = {**random_memories(tiny, queries, seed, ("keys", "reference_comparison")),
             "pooled": rng.normal(size=(queries, pooled_dim)).astype("float32")}
    shared = random_memories(tiny, 1, seed, ("keys", "values"))
    gallery = {**{f: np.broadcast_to(v, (num_gallery, *v.shape[1:])) for f, v in shared.items()},
               "pooled": rng.normal(size=(num_gallery, pooled_dim)).astype("float32")}

    def run():
        distances = ranking_distances(tiny, query, gallery, shortlist=1, pair_batch_size=64)
        evaluate(distances, q_pids, g_pids, q_cams, g_cams)

    return measure(run, repeats=1, warmup=1)["seconds_best"]


def main(argv):
    del argv
    gpu = bool(tf.config.list_logical_devices("GPU"))
    pick = lambda value, on_gpu, on_cpu: value if value is not None else (on_gpu if gpu else on_cpu)  # noqa: E731
    batch_size, gallery_size = pick(FLAGS.batch_size, 20, 2), pick(FLAGS.gallery_size, 15, 4)
    embed_images, score_queries = pick(FLAGS.embed_images, 256, 32), pick(FLAGS.score_queries, 32, 2)
    config = model_config(FLAGS.model)
    rows = [training_rate(config, batch_size, gallery_size, FLAGS.train_steps, FLAGS.seed)]
    print(f"training: {rows[0]['images_per_s']:.1f} images/s ({rows[0]['seconds_per_step']:.2f} s per step)")
    model = KVMMN(config)
    images_per_s = embedding_rate(model, embed_images, FLAGS.embed_batch_size, FLAGS.seed)
    pairs_per_s = scoring_rate(model, score_queries, FLAGS.shortlist, FLAGS.seed)
    rank_seconds = ranking_seconds(FLAGS.rank_queries, FLAGS.num_gallery, model.backbone.output_shape[-1],
                                   FLAGS.seed)
    total_images = FLAGS.num_query + FLAGS.num_gallery
    parts = {"embed": total_images / images_per_s,
             "score": FLAGS.num_query * FLAGS.shortlist / pairs_per_s,
             "rank + protocol": rank_seconds * FLAGS.num_query / FLAGS.rank_queries}
    rows += [{"part": "eval: embed", "measured_on": f"{embed_images} images", "images_per_s": images_per_s,
              "extrapolated_seconds": parts["embed"]},
             {"part": "eval: score shortlist", "measured_on": f"{score_queries} queries x K={FLAGS.shortlist}",
              "pairs_per_s": pairs_per_s, "extrapolated_seconds": parts["score"]},
             {"part": "eval: rank + protocol", "measured_on": f"{FLAGS.rank_queries} queries x {FLAGS.num_gallery}",
              "extrapolated_seconds": parts["rank + protocol"]},
             {"part": "eval: total", "measured_on": f"{FLAGS.num_query} x {FLAGS.num_gallery} (extrapolated)",
              "extrapolated_seconds": sum(parts.values())}]
    device = "GPU" if gpu else "CPU"
    meta = {"device": device, "model": FLAGS.model, "image_size": "x".join(map(str, config.image_size)),
            "d": config.feature_dim, "H": config.num_heads, "shortlist": FLAGS.shortlist,
            "extrapolation": "linear in images (embed), pairs (score) and queries (rank + protocol)"}
    json_path, md_path = write_results(f"kvmmn_training.{device.lower()}", rows, meta, out_dir=FLAGS.out_dir,
                                       title=f"KVM-MN training throughput and Market-size evaluation time ({device})")
    for name, seconds in parts.items():
        print(f"eval {name}: {seconds:.0f} s (extrapolated)")
    print(f"eval total: {sum(parts.values()) / 60:.1f} min for {FLAGS.num_query} x {FLAGS.num_gallery}, K="
          f"{FLAGS.shortlist}; wrote {json_path} and {md_path}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
