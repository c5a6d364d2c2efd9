r"""acp-train: train ACP on the training split of a feature file (ACP Sec. IV-B2; the library is `acp.training`).

    acp-train --features=features/msmt17.npz --preset=basic --train_dir=runs/acp_msmt17
    acp-train --features=features/veriwild.npz --preset=xl --train_dir=runs/acp_veriwild --strategy=mirrored
    acp-train --features=imported.npz --override=use_fusion=false --train_dir=runs/acp_imported   # no f3/f4/f5
    acp-train --features=features/veriwild.npz --ablation=C --train_dir=runs/acp_exp_c            # Table VII

The feature file comes from `acp-extract` (or `acp-import-features`); its train rows are the probes. Defaults are
the paper's recipe: batch 16, Adam lr 2e-4 with weight decay 5e-4 (PyTorch-Adam L2), warm-up over 10 epochs from
0.1, focal loss with the preset's gamma; K = 1000 neighbours, sequences of 1 + 24 rows, l2 = 6. Restarting with the
same --train_dir resumes from its latest checkpoint; --max_steps=0 (default) trains --epochs epochs.

Logged: the focal loss, and the balanced accuracy and average precision of the predicted correlations (means over
each --log_every steps). --eval_every=N holds out a few training identities (not trained on) and re-ranks them
with ACP every N steps: val/mAP, val/rank1 beside val/baseline_mAP, val/baseline_rank1 of the original ranking.
"""
from absl import app, flags

from acp import model as acp_model
from acp import sequences, training
from engine import flags as engine_flags
from engine import validation
from features import feature_file as feature_files

engine_flags.define_common_flags(max_steps=0, checkpoint_every=1000, log_every=100)
declare = engine_flags.declare_once
_recipe = training.Recipe()
_defaults = _recipe.sequences
declare(flags.DEFINE_string, "features", None,
        "Feature file (.npz, features.feature_file schema) whose train rows are used.")
declare(flags.DEFINE_enum, "preset", "basic", "ACP preset of Table II.", enum_values=sorted(acp_model.PRESETS))
declare(flags.DEFINE_multi_string, "override", [], "ACPConfig field as NAME=VALUE, repeatable, e.g. num_layers=2, "
        "use_memory=false (see acp.model.ACPConfig).")
flags.DEFINE_enum("ablation", None, sorted(acp_model.TABLE_VII), "Table VII experiment whose module switches to use "
                  "(A-G; G = the full model); applied before --override.")
declare(flags.DEFINE_integer, "batch_size", _recipe.batch_size, "Training sequences per step (global batch).",
        lower_bound=1)
declare(flags.DEFINE_float, "learning_rate", _recipe.learning_rate, "Adam's learning rate after the warm-up.")
declare(flags.DEFINE_float, "weight_decay", _recipe.weight_decay,
        "Weight decay (an L2 loss term unless --decoupled_weight_decay).")
flags.DEFINE_bool("decoupled_weight_decay", _recipe.decoupled_weight_decay,
                  "Use Keras' decoupled weight decay (AdamW) instead of the L2 term of PyTorch's Adam.")
declare(flags.DEFINE_integer, "epochs", _recipe.epochs, "Epochs (passes over the training probes) when --max_steps=0.",
        lower_bound=1)
declare(flags.DEFINE_float, "warmup_epochs", _recipe.warmup_epochs, "Epochs of linear learning-rate warm-up.",
        lower_bound=0)
declare(flags.DEFINE_float, "warmup_factor", _recipe.warmup_factor, "The warm-up starts at this fraction of the rate.")
flags.DEFINE_integer("num_neighbours", _defaults.num_neighbours, "K: neighbours searched per training probe "
                     "(capped at the training images - 1).", lower_bound=1)
flags.DEFINE_integer("sequence_length", _defaults.length, "l1: samples after the probe in a training sequence.",
                     lower_bound=1)
flags.DEFINE_integer("num_false", _defaults.num_false, "How many of the first false matches join the correct "
                     "matches in the pool a sequence is drawn from.", lower_bound=0)
flags.DEFINE_integer("refinement_length", _defaults.refinement_length, "l2: the refinement length k2 in training.",
                     lower_bound=1)
declare(flags.DEFINE_enum, "metric", _defaults.metric, "Distance of the neighbour search on the embeddings.",
        enum_values=["cosine", "euclidean"])
declare(flags.DEFINE_integer, "eval_every", 0, validation.EVAL_EVERY_HELP, lower_bound=0)
declare(flags.DEFINE_integer, "chunk_size", sequences.DEFAULT_CHUNK_SIZE, "Rows per chunk of the neighbour search.",
        lower_bound=1)
FLAGS = flags.FLAGS


def config_from_flags() -> acp_model.ACPConfig:
    ablation = acp_model.TABLE_VII[FLAGS.ablation] if FLAGS.ablation else {}
    try:
        return acp_model.make_config(FLAGS.preset, **{**ablation, **acp_model.parse_overrides(FLAGS.override)})
    except ValueError as err:
        raise flags.IllegalFlagValueError(f"--override / --ablation: {err}") from None


def recipe_from_flags() -> training.Recipe:
    sequence_config = sequences.SequenceConfig(
        num_neighbours=FLAGS.num_neighbours, length=FLAGS.sequence_length, num_false=FLAGS.num_false,
        refinement_length=FLAGS.refinement_length, metric=FLAGS.metric)
    return training.Recipe(batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                           weight_decay=FLAGS.weight_decay, decoupled_weight_decay=FLAGS.decoupled_weight_decay,
                           epochs=FLAGS.epochs, warmup_epochs=FLAGS.warmup_epochs, warmup_factor=FLAGS.warmup_factor,
                           sequences=sequence_config, eval_every=FLAGS.eval_every)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.features:
        raise app.UsageError("--features is required: the feature file written by acp-extract")
    strategy = engine_flags.setup_from_flags()
    features = feature_files.load_features(FLAGS.features)
    print(features.summary())
    result = training.train(features, engine_flags.loop_config_from_flags(), FLAGS.preset, config_from_flags(),
                            recipe_from_flags(), strategy, seed=FLAGS.seed, chunk_size=FLAGS.chunk_size)
    print(f"trained to step {result['step']} of {result['max_steps']} ({result['steps_per_epoch']} per epoch) in "
          f"{FLAGS.train_dir}: {result['metrics']}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
