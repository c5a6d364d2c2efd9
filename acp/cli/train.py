r"""acp-train: train ACP on the training split of a feature file (ACP Sec. IV-B2; the library is `acp.training`).

    acp-train --features=features/msmt17.npz --preset=basic --train_dir=runs/acp_msmt17
    acp-train --features=features/veriwild.npz --preset=xl --train_dir=runs/acp_veriwild --strategy=mirrored
    acp-train --features=imported.npz --override=use_fusion=false --train_dir=runs/acp_imported   # no f3/f4/f5
    acp-train --features=features/veriwild.npz --ablation=C --train_dir=runs/acp_exp_c            # Table VII

The feature file comes from `acp-extract` (or `acp-import-features`); its train rows are the probes. Defaults are
the paper's recipe: batch 16, Adam lr 2e-4 with weight decay 5e-4 (PyTorch-Adam L2), warm-up over 10 epochs from
0.1, focal loss with the preset's gamma; K = 1000 neighbours, sequences of 1 + 24 rows, l2 = 6. Restarting with the
same --train_dir resumes from its latest checkpoint; --max_steps=0 (default) trains --epochs epochs. The recipe
flags are the fields of `acp.training.Recipe` and `acp.sequences.SequenceConfig`; --override sets `ACPConfig`
fields (typed by the dataclass).

Logged: the focal loss, and the balanced accuracy and average precision of the predicted correlations (means over
each --log_every steps). --eval_every=N holds out a few training identities (not trained on) and re-ranks them
with ACP every N steps: val/mAP, val/rank1 beside val/baseline_mAP, val/baseline_rank1 of the original ranking.
"""
from __future__ import annotations

from absl import flags

from acp import model as acp_model
from acp import sequences, training
from engine import cli, validation
from engine.train_loop import RestoreError
from features import feature_file as feature_files
from rerank.knn import METRICS

FLAGS = cli.new_flags()
cli.define_loop_flags(FLAGS, max_steps=0, checkpoint_every=1000, log_every=100)
flags.DEFINE_string("features", None, "Feature file (.npz, features.feature_file schema) whose train rows are used.",
                    flag_values=FLAGS)
flags.DEFINE_enum("preset", "basic", sorted(acp_model.PRESETS), "ACP preset of Table II.", flag_values=FLAGS)
flags.DEFINE_multi_string("override", [], "ACPConfig field as NAME=VALUE, repeatable, e.g. num_layers=2, "
                          "use_memory=false, block_dims=256:512:1024 (see acp.model.ACPConfig).", flag_values=FLAGS)
flags.DEFINE_enum("ablation", None, sorted(acp_model.TABLE_VII), "Table VII experiment whose module switches to use "
                  "(A-G; G = the full model); applied before --override.", flag_values=FLAGS)
RECIPE = cli.define_config_flags(
    FLAGS, training.Recipe, exclude=("sequences",),
    help={"batch_size": "Training sequences per step (global batch).",
          "learning_rate": "Adam's learning rate after the warm-up.",
          "weight_decay": "Weight decay (an L2 loss term unless --decoupled_weight_decay).",
          "decoupled_weight_decay": "Use Keras' decoupled weight decay (AdamW) instead of the L2 term of PyTorch's "
                                    "Adam.",
          "epochs": "Epochs (passes over the training probes) when --max_steps=0.",
          "warmup_epochs": "Epochs of linear learning-rate warm-up.",
          "warmup_factor": "The warm-up starts at this fraction of the rate.",
          "eval_every": validation.EVAL_EVERY_HELP},
    checks={"batch_size": cli.AT_LEAST_ONE, "learning_rate": cli.POSITIVE, "weight_decay": cli.NON_NEGATIVE,
            "epochs": cli.AT_LEAST_ONE, "warmup_epochs": cli.NON_NEGATIVE,
            "warmup_factor": cli.Check(min=0, max=1, min_open=True), "eval_every": cli.NON_NEGATIVE})
SEQUENCES = cli.define_config_flags(
    FLAGS, sequences.SequenceConfig, names={"length": "sequence_length"}, choices={"metric": METRICS},
    help={"num_neighbours": "K: neighbours searched per training probe (capped at the training images - 1).",
          "length": "l1: samples after the probe in a training sequence.",
          "num_false": "How many of the first false matches join the correct matches in the pool a sequence is "
                       "drawn from.",
          "refinement_length": "l2: the refinement length k2 in training.",
          "metric": "Distance of the neighbour search on the embeddings."},
    checks={"num_neighbours": cli.AT_LEAST_ONE, "length": cli.AT_LEAST_ONE, "num_false": cli.NON_NEGATIVE,
            "refinement_length": cli.AT_LEAST_ONE})
flags.DEFINE_integer("chunk_size", sequences.DEFAULT_CHUNK_SIZE, "Rows per chunk of the neighbour search.",
                     lower_bound=1, flag_values=FLAGS)


def config_from_flags() -> acp_model.ACPConfig:
    """The ACP configuration: --preset, then the --ablation's switches, then --override."""
    ablation = acp_model.TABLE_VII[FLAGS["ablation"].value] if FLAGS["ablation"].value else {}
    overrides = cli.parse_assignments(FLAGS["override"].value, acp_model.ACPConfig, "--override")
    return acp_model.make_config(FLAGS["preset"].value, **{**ablation, **overrides})


def recipe_from_flags() -> training.Recipe:
    return RECIPE.build(sequences=SEQUENCES.build())


def main(argv):
    del argv
    path = cli.require(FLAGS, "features", "the feature file written by acp-extract")
    config, recipe = config_from_flags(), recipe_from_flags()  # flag errors before any work
    loop_config = cli.loop_config_from_flags(FLAGS)
    strategy = cli.setup_from_flags(FLAGS)
    features = feature_files.load_features(path)
    print(features.summary())
    result = training.train(features, loop_config, FLAGS["preset"].value, config, recipe, strategy,
                            seed=FLAGS["seed"].value, chunk_size=FLAGS["chunk_size"].value)
    print(f"trained to step {result['step']} of {result['max_steps']} ({result['steps_per_epoch']} per epoch) in "
          f"{loop_config.train_dir}: {result['metrics']}")


def run():
    cli.run(main, FLAGS, __doc__, user_errors=(RestoreError,))


if __name__ == "__main__":
    run()
