r"""acp-baseline-train: train the ResNet-50 strong baseline (BNNeck, label-smoothed CE + batch-hard triplet, P x K
sampling, warm-up, random erasing, Adam) whose features ACP re-ranks (ACP Sec. IV-B1; the `features` package).

    acp-baseline-train --dataset=market1501 --data_root=/data/Market-1501-v15.09.15 \
        --train_dir=runs/baseline_market --pretrained=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5

Restarting with the same --train_dir resumes from its latest checkpoint. --max_steps=0 (default) trains --epochs
epochs of (training identities // P) steps. Then `acp-extract --checkpoint=runs/baseline_market ...` writes the
feature file.

--eval_every=N holds out a few training identities (not trained on; the classifier has one class per remaining
identity) and reports the embedding's mAP / rank-1 on them every N steps (val/mAP, val/rank1 in TensorBoard).
"""
from absl import app, flags

from data import datasets
from engine import flags as engine_flags
from engine import validation
from features import training
from features.head import ModelConfig
from features.recipe import Recipe

engine_flags.define_common_flags(max_steps=0, checkpoint_every=1000, log_every=50)
engine_flags.define_dataset_flags()
_recipe = Recipe()
declare = engine_flags.declare_once
declare(flags.DEFINE_string, "pretrained", None,
        "Keras weight file of an ImageNet ResNet-50 without top (keras.applications' legacy .h5 or a .weights.h5); "
        "without it the backbone starts from random weights. Never downloaded.")
declare(flags.DEFINE_integer, "depth", 50, "ResNet depth: 50, 101 or 152.")
declare(flags.DEFINE_list, "blocks", [],
        "Bottleneck blocks of the four stages, overriding --depth (e.g. 1,1,1,1: a small network for quick CPU "
        "demos and tests; ImageNet weights then do not fit).")
declare(flags.DEFINE_integer, "last_stride", 1, "Stride of ResNet stage conv5 (1 in the strong baseline).")
declare(flags.DEFINE_integer, "image_height", 256, "Input height.")
declare(flags.DEFINE_integer, "image_width", 128, "Input width.")
declare(flags.DEFINE_integer, "num_identities", _recipe.num_identities, "P: identities per batch.")
declare(flags.DEFINE_integer, "num_instances", _recipe.num_instances, "K: images per identity in a batch.")
declare(flags.DEFINE_integer, "epochs", _recipe.epochs, "Epochs (each visits every training identity once); "
        "used when --max_steps=0, and as the unit of the warm-up and decay flags.")
declare(flags.DEFINE_float, "learning_rate", _recipe.learning_rate, "Adam's base learning rate.")
declare(flags.DEFINE_float, "warmup_epochs", _recipe.warmup_epochs, "Epochs of linear learning-rate warm-up.")
declare(flags.DEFINE_float, "warmup_factor", _recipe.warmup_factor, "Warm-up starts at this fraction of the rate.")
declare(flags.DEFINE_list, "decay_epochs", [str(e) for e in _recipe.decay_epochs],
        "Epochs at which the rate is multiplied by --decay_gamma.")
declare(flags.DEFINE_float, "decay_gamma", _recipe.decay_gamma, "Learning-rate decay factor.")
declare(flags.DEFINE_float, "weight_decay", _recipe.weight_decay, "L2 weight decay (PyTorch Adam style).")
declare(flags.DEFINE_float, "label_smoothing", _recipe.label_smoothing, "Label smoothing epsilon.")
declare(flags.DEFINE_float, "triplet_margin", _recipe.triplet_margin, "Margin of the batch-hard triplet loss.")
declare(flags.DEFINE_bool, "flip", _recipe.flip, "Random horizontal flips.")
declare(flags.DEFINE_bool, "random_erasing", _recipe.random_erasing, "Random erasing (Zhong et al. 2017).")
declare(flags.DEFINE_integer, "eval_every", 0, validation.EVAL_EVERY_HELP, lower_bound=0)
FLAGS = flags.FLAGS


def recipe_from_flags() -> Recipe:
    try:
        decay_epochs = tuple(float(e) for e in FLAGS.decay_epochs)
    except ValueError:
        raise flags.IllegalFlagValueError(f"--decay_epochs must be numbers, got {FLAGS.decay_epochs}") from None
    return Recipe(
        num_identities=FLAGS.num_identities, num_instances=FLAGS.num_instances, epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate, warmup_epochs=FLAGS.warmup_epochs, warmup_factor=FLAGS.warmup_factor,
        decay_epochs=decay_epochs, decay_gamma=FLAGS.decay_gamma, weight_decay=FLAGS.weight_decay,
        label_smoothing=FLAGS.label_smoothing, triplet_margin=FLAGS.triplet_margin, flip=FLAGS.flip,
        random_erasing=FLAGS.random_erasing, eval_every=FLAGS.eval_every)


def main(argv):
    del argv
    strategy = engine_flags.setup_from_flags()
    record = datasets.load(FLAGS.dataset, FLAGS.data_root, split=FLAGS.split or None)
    print(record.summary())
    model_config = ModelConfig(num_classes=record.num_train_pids,
                                        image_size=(FLAGS.image_height, FLAGS.image_width), depth=FLAGS.depth,
                                        blocks=tuple(int(b) for b in FLAGS.blocks) or None,
                                        last_stride=FLAGS.last_stride)
    result = training.train(record, model_config, recipe_from_flags(), engine_flags.loop_config_from_flags(),
                            strategy, pretrained=FLAGS.pretrained, seed=FLAGS.seed)
    print(f"trained to step {result['step']} in {FLAGS.train_dir}: {result['metrics']}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
