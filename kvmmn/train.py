r"""kvmmn-train: train KVM-MN with set-wise samples (Zhang, Li and Zhang, AAAI 2019), resumably.

The defaults are the paper's recipe (Sec. "Training the Network"; Table 1's model, random erasing and rotation
included; `--norandom_erasing --norandom_rotation` train Table 1's "KVM-MN-noAug"). Examples:

    # Market-1501 from TF-slim's ImageNet Inception V1, on every GPU of this machine
    kvmmn-train --dataset=market1501 --data_root=/data/market1501 --train_dir=runs/market \
        --pretrained=/models/inception_v1.ckpt --strategy=mirrored

    # Table 3's "Base" on one CUHK03 (labeled) split: d = 256, M = 10, 100K steps, 100K combinations
    kvmmn-train --dataset=cuhk03_labeled --data_root=/data/cuhk03 --split=kvmmn/0 --feature_dim=256 \
        --gallery_size=10 --max_steps=100000 --num_samples=100000 --norandom_erasing --norandom_rotation \
        --pretrained=... --train_dir=runs/base

Every --log_every steps the loss and the set accuracy (means over those steps) are logged; --eval_every=N holds
out a few training identities (not trained on) and ranks them with the model every N steps (val/mAP, val/rank1
beside val/pooled_l2_mAP of the backbone's L2 ranking, in TensorBoard and on stdout).

Restarting a command with the same --train_dir continues from its latest checkpoint. `--flagfile=FILE` reads
flags from a file. See `kvmmn.training` for what each setting means.
"""
from __future__ import annotations

from absl import app, flags, logging

from data import datasets
from engine import flags as engine_flags
from engine import validation
from kvmmn import losses, sampling
from kvmmn.inception_v1 import BATCHNORM_MODES
from kvmmn.model import BACKBONES, KVMMNConfig
from kvmmn.training import TrainConfig, parse_dataset_options, train

engine_flags.define_common_flags(max_steps=250_000, checkpoint_every=5000, log_every=100)

# Data and samples. Shared names are declared once: several binaries may be imported into one process (tests).
declare = engine_flags.declare_once
declare(flags.DEFINE_enum, "dataset", "synthetic", "Dataset to train on.", enum_values=list(datasets.names()))
declare(flags.DEFINE_string, "data_root", "", "Dataset folder (for the synthetic dataset: where it is generated; "
        "empty: the default cache folder).")
declare(flags.DEFINE_string, "split", None, "Split to train on (CUHK03 / CUHK01 train one model per split, e.g. "
        "kvmmn/0 or 100/3); default: the dataset's only split.")
declare(flags.DEFINE_multi_string, "dataset_option", [], "Reader option NAME=VALUE, repeatable (e.g. test_ids=486 "
        "for CUHK01's 486-identity protocol).")
flags.DEFINE_enum("loss", "setwise", list(losses.LOSSES), "setwise: the matching-network loss of Eq. 7-8; pair: "
                  "pairwise classification of every (probe, gallery image) pair (Table 3 row D 'Pair').")
flags.DEFINE_integer("gallery_size", 15, "M, images (and identities) of a gallery set.", lower_bound=2)
declare(flags.DEFINE_integer, "batch_size", 20, "Combinations (probe + gallery set) per step, over all replicas.",
        lower_bound=1)
flags.DEFINE_enum("mining", "hard", list(sampling.MINING), "hard: negatives from the probe's L2 nearest neighbours; "
                  "rand: random identities (Table 3 row D, '2-hard' / '2-rand').")
flags.DEFINE_integer("num_neighbors", sampling.NUM_NEIGHBORS, "Nearest neighbours hard negatives are drawn from.",
        lower_bound=1)
flags.DEFINE_integer("num_samples", 500_000, "Size of the fixed pool of combinations (Table 3 '#Sample'); 0 draws a "
                     "new combination for every example.", lower_bound=0)
flags.DEFINE_integer("refresh_every", 0, "Mine the neighbours again with the current model every this many steps "
                     "(0: once, from the starting model).", lower_bound=0)
# On by default: Table 1's KVM-MN; --norandom_erasing --norandom_rotation give its "KVM-MN-noAug" row.
declare(flags.DEFINE_bool, "random_erasing", True, "Random erasing (Table 3 'RE').")
flags.DEFINE_bool("random_rotation", True, "Random rotation in [-pi/16, pi/16] (Table 3 'RR').")

# Optimizer.
declare(flags.DEFINE_float, "learning_rate", 0.01, "Base learning rate of SGD.")
flags.DEFINE_list("decay_at", ["0.6", "0.8"], "Fractions of --max_steps after which the learning rate is multiplied "
                  "by --decay_factor.")
flags.DEFINE_float("decay_factor", 0.1, "Learning-rate decay factor.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
declare(flags.DEFINE_float, "weight_decay", 2e-4,
        "TF-slim weight decay (L2 loss wd * sum(w^2) / 2 on weight matrices).")
declare(flags.DEFINE_string, "pretrained", None, "TF-slim Inception V1 checkpoint (inception_v1.ckpt); without it "
        "the backbone trains from scratch.")
flags.DEFINE_bool("cross_replica_batchnorm", True, "With several replicas, batch-norm statistics over the global "
                  "batch (false: per replica).")
declare(flags.DEFINE_integer, "eval_every", 0, validation.EVAL_EVERY_HELP, lower_bound=0)
flags.DEFINE_integer("embed_batch_size", 64, "Images per batch when embedding the training set for mining.",
        lower_bound=1)

# Model (Table 3's columns).
flags.DEFINE_enum("backbone", "inception_v1", list(BACKBONES), "Feature extractor up to output stride 16.")
flags.DEFINE_list("image_size", ["224", "112"], "Input height,width.")
flags.DEFINE_integer("feature_dim", 512, "d.", lower_bound=1)
flags.DEFINE_integer("num_heads", 4, "H.", lower_bound=1)
flags.DEFINE_integer("key_dim", 64, "d_k.", lower_bound=1)
flags.DEFINE_integer("value_dim", 64, "d_v.", lower_bound=1)
flags.DEFINE_bool("shared_key_value", False, "K = V (Table 3 row A).")
flags.DEFINE_bool("position_embedding", True, "Position embedding of Eq. 1 (Table 3 row C).")
flags.DEFINE_integer("output_dim", None, "d_o (default d).", lower_bound=1)
flags.DEFINE_integer("comparison_dim", None, "d_c (default d).", lower_bound=1)
flags.DEFINE_integer("score_hidden_units", 512, "Hidden width of Eq. 6's FFN.", lower_bound=1)
flags.DEFINE_enum("backbone_batchnorm", "trainable", list(BATCHNORM_MODES), "Inception V1 batch norm: trainable "
                  "or frozen (checkpoint statistics).")

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The TrainConfig the command line describes."""
    if not FLAGS.train_dir:
        raise flags.IllegalFlagValueError("--train_dir is required: checkpoints and summaries are written there")
    if len(FLAGS.image_size) != 2:
        raise flags.IllegalFlagValueError(f"--image_size={','.join(FLAGS.image_size)} must be height,width")
    model = KVMMNConfig(
        backbone=FLAGS.backbone, image_size=tuple(int(s) for s in FLAGS.image_size), feature_dim=FLAGS.feature_dim,
        num_heads=FLAGS.num_heads, key_dim=FLAGS.key_dim, value_dim=FLAGS.value_dim,
        shared_key_value=FLAGS.shared_key_value, position_embedding=FLAGS.position_embedding,
        output_dim=FLAGS.output_dim, comparison_dim=FLAGS.comparison_dim,
        score_hidden_units=FLAGS.score_hidden_units, backbone_batchnorm=FLAGS.backbone_batchnorm, seed=FLAGS.seed)
    return TrainConfig(
        train_dir=FLAGS.train_dir, dataset=FLAGS.dataset, data_root=FLAGS.data_root, split=FLAGS.split,
        dataset_options=parse_dataset_options(FLAGS.dataset_option), model=model, loss=FLAGS.loss,
        gallery_size=FLAGS.gallery_size, batch_size=FLAGS.batch_size, mining=FLAGS.mining,
        num_neighbors=FLAGS.num_neighbors, num_samples=FLAGS.num_samples, refresh_every=FLAGS.refresh_every,
        max_steps=FLAGS.max_steps, learning_rate=FLAGS.learning_rate,
        decay_at=tuple(float(f) for f in FLAGS.decay_at), decay_factor=FLAGS.decay_factor, momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay, random_erasing=FLAGS.random_erasing, random_rotation=FLAGS.random_rotation,
        pretrained=FLAGS.pretrained, seed=FLAGS.seed, strategy=FLAGS.strategy,
        cross_replica_batchnorm=FLAGS.cross_replica_batchnorm, mixed_precision=FLAGS.mixed_precision, xla=FLAGS.xla,
        checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every, keep_checkpoints=FLAGS.keep_checkpoints,
        embed_batch_size=FLAGS.embed_batch_size, eval_every=FLAGS.eval_every)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    result = train(config_from_flags())
    logging.info("finished at step %d in %s: %s", result["step"], result["train_dir"], result["metrics"])


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
