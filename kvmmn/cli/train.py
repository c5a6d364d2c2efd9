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
flags from a file. Every flag is a field of `kvmmn.training.TrainConfig` or `kvmmn.model.KVMMNConfig` (their
defaults are the flags' defaults); `--num_neighbors` is the deprecated spelling of `--num_neighbours`.
"""
from __future__ import annotations

import dataclasses

from absl import logging

from engine import cli, validation
from engine.train_loop import RestoreError
from kvmmn import losses, sampling
from kvmmn.inception_v1 import BATCHNORM_MODES
from kvmmn.model import BACKBONES, KVMMNConfig
from kvmmn.training import TrainConfig, train

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
_LOOP = ("train_dir", "max_steps", "checkpoint_every", "log_every", "keep_checkpoints", "xla", "seed", "strategy",
         "mixed_precision")
_DATA = ("dataset", "data_root", "split", "dataset_options")

FLAGS = cli.new_flags()
cli.define_loop_flags(FLAGS, **{name: _DEFAULTS[name] for name in _LOOP if name != "train_dir"})
cli.define_dataset_flags(FLAGS, default=_DEFAULTS["dataset"], strict_decoding=True, split_help="Split to train on (CUHK03 / CUHK01 train "
                         "one model per split, e.g. kvmmn/0 or 100/3); default: the dataset's only split.")
RECIPE = cli.define_config_flags(
    FLAGS, TrainConfig, exclude=_LOOP + _DATA + ("model", "show_progress"),
    names={"num_neighbors": "num_neighbours"},
    choices={"loss": losses.LOSSES, "mining": sampling.MINING},
    help={"loss": "setwise: the matching-network loss of Eq. 7-8; pair: pairwise classification of every (probe, "
                  "gallery image) pair (Table 3 row D 'Pair').",
          "gallery_size": "M, images (and identities) of a gallery set.",
          "batch_size": "Combinations (probe + gallery set) per step, over all replicas.",
          "mining": "hard: negatives from the probe's L2 nearest neighbours; rand: random identities (Table 3 row D, "
                    "'2-hard' / '2-rand').",
          "num_neighbors": "Nearest neighbours hard negatives are drawn from.",
          "num_samples": "Size of the fixed pool of combinations (Table 3 '#Sample'); 0 draws a new combination for "
                         "every example.",
          "refresh_every": "Mine the neighbours again with the current model every this many steps (0: once, from "
                           "the starting model).",
          "learning_rate": "Base learning rate of SGD.",
          "decay_at": "Fractions of --max_steps after which the learning rate is multiplied by --decay_factor.",
          "decay_factor": "Learning-rate decay factor.",
          "momentum": "SGD momentum.",
          "weight_decay": "TF-slim weight decay (L2 loss wd * sum(w^2) / 2 on weight matrices).",
          "random_erasing": "Random erasing (Table 3 'RE'); --norandom_erasing --norandom_rotation give Table 1's "
                            "'KVM-MN-noAug'.",
          "random_rotation": "Random rotation in [-pi/16, pi/16] (Table 3 'RR').",
          "pretrained": "TF-slim Inception V1 checkpoint (inception_v1.ckpt) or a kvmmn.pretrain backbone "
                        "checkpoint; without it the backbone trains from scratch.",
          "cross_replica_batchnorm": "With several replicas, batch-norm statistics over the global batch (false: "
                                     "per replica).",
          "embed_batch_size": "Images per batch when embedding the training set for mining.",
          "cache_images": "Hold the resized training images in memory (small training sets such as the synthetic "
                          "one) instead of decoding each batch's files at every step; the batches are the same.",
          "eval_every": validation.EVAL_EVERY_HELP},
    checks={"gallery_size": cli.Check(min=2), "batch_size": cli.AT_LEAST_ONE, "num_neighbors": cli.AT_LEAST_ONE,
            "num_samples": cli.NON_NEGATIVE, "refresh_every": cli.NON_NEGATIVE, "learning_rate": cli.POSITIVE,
            "decay_at": cli.Check(min=0, max=1, min_open=True, max_open=True), "decay_factor": cli.POSITIVE,
            "momentum": cli.Check(min=0, max=1, max_open=True), "weight_decay": cli.NON_NEGATIVE,
            "embed_batch_size": cli.AT_LEAST_ONE, "eval_every": cli.NON_NEGATIVE})
cli.deprecated_alias(FLAGS, "num_neighbors", "num_neighbours")
MODEL = cli.define_config_flags(
    FLAGS, KVMMNConfig, exclude=("seed",), choices={"backbone": BACKBONES, "backbone_batchnorm": BATCHNORM_MODES},
    help={"backbone": "Feature extractor up to output stride 16: inception_v1 (TF-slim's, to Mixed_4f) or tiny "
                      "(four strided convolutions, for tests).",
          "image_size": "Input height,width.", "feature_dim": "d.", "num_heads": "H.", "key_dim": "d_k.",
          "value_dim": "d_v.", "shared_key_value": "K = V (Table 3 row A).",
          "position_embedding": "Position embedding of Eq. 1 (Table 3 row C).", "output_dim": "d_o (default d).",
          "comparison_dim": "d_c (default d).", "score_hidden_units": "Hidden width of Eq. 6's FFN.",
          "backbone_batchnorm": "Inception V1 batch norm: trainable or frozen (checkpoint statistics)."},
    checks={name: cli.AT_LEAST_ONE for name in ("image_size", "feature_dim", "num_heads", "key_dim", "value_dim",
                                                "output_dim", "comparison_dim", "score_hidden_units")})


def config_from_flags() -> TrainConfig:
    """The TrainConfig the command line describes."""
    cli.require(FLAGS, "train_dir", "checkpoints and summaries are written there")
    loop = {name: FLAGS[name].value for name in _LOOP}
    data = cli.dataset_kwargs(FLAGS)
    return TrainConfig(dataset=data.pop("name"), data_root=data.pop("root") or "", split=data.pop("split"),
                       dataset_options=data, model=MODEL.build(seed=FLAGS["seed"].value), **loop, **RECIPE.values())


def main(argv):
    del argv
    result = train(config_from_flags())
    logging.info("finished at step %d in %s: %s", result["step"], result["train_dir"], result["metrics"])


def run():
    cli.run(main, FLAGS, __doc__, user_errors=(RestoreError,))


if __name__ == "__main__":
    run()
