r"""acp-baseline-train: train the ResNet-50 strong baseline (BNNeck, label-smoothed CE + batch-hard triplet, P x K
sampling, warm-up, random erasing, Adam) whose features ACP re-ranks (ACP Sec. IV-B1; the `features` package).

    acp-baseline-train --dataset=market1501 --data_root=/data/Market-1501-v15.09.15 \
        --train_dir=runs/baseline_market --pretrained=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5

Restarting with the same --train_dir resumes from its latest checkpoint. --max_steps=0 (default) trains --epochs
epochs of (training identities // P) steps. Then `acp-extract --checkpoint=runs/baseline_market ...` writes the
feature file. The recipe flags are the fields of `features.recipe.Recipe`, the model flags those of
`features.head.ModelConfig`, with their defaults; --image_height / --image_width are the deprecated spelling of
--image_size=HEIGHT,WIDTH.

--eval_every=N holds out a few training identities (not trained on; the classifier has one class per remaining
identity) and reports the embedding's mAP / rank-1 on them every N steps (val/mAP, val/rank1 in TensorBoard).
"""
from __future__ import annotations

import os
import sys

from absl import flags

from engine import cli, validation
from engine.train_loop import RestoreError
from features import training
from features.backbone import RESNET_BLOCKS
from features.head import ModelConfig
from features.recipe import Recipe

FLAGS = cli.new_flags()
cli.define_loop_flags(FLAGS, max_steps=0, checkpoint_every=1000, log_every=50)
cli.define_dataset_flags(FLAGS, strict_decoding=True)
RECIPE = cli.define_config_flags(
    FLAGS, Recipe,
    help={"num_identities": "P: identities per batch.", "num_instances": "K: images per identity in a batch.",
          "epochs": "Epochs (each visits every training identity once); used when --max_steps=0, and as the unit of "
                    "the warm-up and decay flags.",
          "learning_rate": "Adam's base learning rate.", "warmup_epochs": "Epochs of linear learning-rate warm-up.",
          "warmup_factor": "Warm-up starts at this fraction of the rate.",
          "decay_epochs": "Epochs at which the rate is multiplied by --decay_gamma.",
          "decay_gamma": "Learning-rate decay factor.", "weight_decay": "L2 weight decay (PyTorch Adam style).",
          "label_smoothing": "Label smoothing epsilon.", "triplet_margin": "Margin of the batch-hard triplet loss.",
          "flip": "Random horizontal flips.", "random_erasing": "Random erasing (Zhong et al. 2017).",
          "eval_every": validation.EVAL_EVERY_HELP},
    checks={"num_identities": cli.Check(min=2), "num_instances": cli.Check(min=2), "epochs": cli.AT_LEAST_ONE,
            "learning_rate": cli.POSITIVE, "warmup_epochs": cli.NON_NEGATIVE,
            "warmup_factor": cli.Check(min=0, max=1, min_open=True), "decay_epochs": cli.NON_NEGATIVE,
            "decay_gamma": cli.POSITIVE, "weight_decay": cli.NON_NEGATIVE,
            "label_smoothing": cli.Check(min=0, max=1, max_open=True), "triplet_margin": cli.NON_NEGATIVE,
            "eval_every": cli.NON_NEGATIVE})
MODEL = cli.define_config_flags(
    FLAGS, ModelConfig, exclude=("num_classes", "caffe_input"),
    help={"image_size": "Input height,width.", "depth": "ResNet depth: 50, 101 or 152.",
          "blocks": "Bottleneck blocks of the four stages, overriding --depth (e.g. 1,1,1,1: a small network for "
                    "quick CPU demos and tests; ImageNet weights then do not fit).",
          "last_stride": "Stride of ResNet stage conv5 (1 in the strong baseline)."},
    checks={"image_size": cli.Check(min=32), "blocks": cli.Check(min=1, length=4), "last_stride": cli.Check(min=1,
                                                                                                         max=2)})


def _check_depth(depth: int) -> None:
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"must be one of {', '.join(map(str, RESNET_BLOCKS))}")


cli.validate(FLAGS, "depth", _check_depth)
for _name in ("image_height", "image_width"):  # the old spelling: two flags for one setting
    cli.define(FLAGS, _name, int, None, "deprecated spelling of --image_size=HEIGHT,WIDTH", cli.Check(min=32))
    FLAGS[_name].deprecated_for = "image_size"
flags.DEFINE_string("pretrained", None, "Keras weight file (HDF5) of an ImageNet ResNet-50 without top "
                    "(keras.applications' legacy .h5 or a .weights.h5); without it the backbone starts from random "
                    "weights. Never downloaded.", flag_values=FLAGS)


def check_pretrained(path: str | None) -> None:
    """Refuse, before any work, a --pretrained that is not an HDF5 weight file."""
    import h5py

    if path and (not os.path.isfile(path) or not h5py.is_hdf5(path)):
        raise cli.UserError(f"--pretrained={path}: " + ("no such file" if not os.path.exists(path) else
                                                         "not an HDF5 (.h5) Keras weight file"))


def model_config(num_classes: int) -> ModelConfig:
    height, width = FLAGS["image_size"].value
    for name in ("image_height", "image_width"):
        if FLAGS[name].present:
            print(f"warning: --{name} is deprecated; use --image_size=HEIGHT,WIDTH", file=sys.stderr)
    height, width = FLAGS["image_height"].value or height, FLAGS["image_width"].value or width
    return MODEL.build(num_classes=num_classes, image_size=(height, width), blocks=FLAGS["blocks"].value or None)


def main(argv):
    del argv
    check_pretrained(FLAGS["pretrained"].value)
    loop_config = cli.loop_config_from_flags(FLAGS)
    strategy = cli.setup_from_flags(FLAGS)
    record = cli.load_dataset(FLAGS)
    print(record.summary())
    result = training.train(record, model_config(record.num_train_pids), RECIPE.build(), loop_config, strategy,
                            pretrained=FLAGS["pretrained"].value, seed=FLAGS["seed"].value)
    print(f"trained to step {result['step']} in {loop_config.train_dir}: {result['metrics']}")


def run():
    cli.run(main, FLAGS, __doc__, user_errors=(RestoreError,))


if __name__ == "__main__":
    run()
