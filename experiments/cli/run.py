r"""reid-experiments: regenerate a table of the KVM-MN or ACP paper beside the paper's own numbers.

    reid-experiments --list
    reid-experiments --table=acp_table3 --scale=paper                  # analytic, seconds
    reid-experiments --table=acp_table5 --scale=smoke                  # every row on synthetic data, CPU
    reid-experiments --table=kvmmn_table3 --scale=paper --data_root=/data \
        --inception_checkpoint=/models/inception_v1.ckpt --strategy=mirrored

Rows go into `<results_dir>/<table>.csv` and `.md` as they finish; finished rows are skipped and training runs
resume, so a killed run started again continues (`experiments.run`). Every source of randomness is seeded from
--seed. `--scale=smoke` runs every row on the synthetic dataset with toy models on the CPU: a check that the whole
table runs, not a reproduction. Exit status 1 when a row failed.
"""
from __future__ import annotations

from absl import flags

from engine import cli, distribute
from experiments import tables
from experiments.context import SCALES, Context
from experiments.run import list_tables, run_table

FLAGS = cli.new_flags()
flags.DEFINE_string("table", None, "Table to regenerate (see --list).", flag_values=FLAGS)
flags.DEFINE_list("rows", [], "Only these row ids of the table (comma-separated; see --list).", flag_values=FLAGS)
flags.DEFINE_enum("scale", "smoke", list(SCALES), "paper: each row on its own dataset with the paper's recipe; "
                  "smoke: every row on the synthetic dataset with a few training steps on the CPU.", flag_values=FLAGS)
flags.DEFINE_string("data_root", None, "Folder holding the datasets under their usual folder names (or one dataset's "
                    "folder); at smoke scale, where the synthetic dataset is generated (default: its cache folder).",
                    flag_values=FLAGS)
flags.DEFINE_string("results_dir", "results", "Where <table>.csv and <table>.md are written.", flag_values=FLAGS)
flags.DEFINE_string("work_dir", None, "Trained models and feature files (default <results_dir>/work/<scale>).",
                    flag_values=FLAGS)
flags.DEFINE_string("features_dir", None, "Feature files of the re-ranking tables: used when present, written when "
                    "missing (default <work_dir>/features; names in experiments.runners.feature_files).",
                    flag_values=FLAGS)
flags.DEFINE_string("inception_checkpoint", None, "TF-slim inception_v1.ckpt (KVM-MN tables, paper scale).",
                    flag_values=FLAGS)
flags.DEFINE_string("resnet_weights", None, "Keras ImageNet ResNet-50 weights without top (re-ID baseline of the ACP "
                    "tables, paper scale; only needed when feature files must be extracted).", flag_values=FLAGS)
flags.DEFINE_enum("strategy", "one_device", list(distribute.STRATEGIES), "tf.distribute strategy of training.",
                  flag_values=FLAGS)
flags.DEFINE_integer("max_splits", None, "Evaluate only the first N splits of multi-split protocols (CUHK03 / CUHK01 "
                     "10 splits, VehicleID 10 galleries); default all, as the papers.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_bool("list", False, "List the tables (or the rows of --table) with the paper's numbers, and exit.",
                  flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of every random generator (initialisers, samplers, augmentation, dropout); "
                     "recorded in each row's info.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("verbose", 1, "0: quiet; 1: progress of training; 2: also of re-ranking.", lower_bound=0,
                     upper_bound=2, flag_values=FLAGS)


def main(argv):
    del argv
    table = FLAGS["table"].value
    if FLAGS["list"].value:
        print(list_tables(table))
        return 0
    if not table:
        raise cli.UserError(f"--table is required; one of: {', '.join(tables.names())} (or --list)")
    tables.get(table).select(FLAGS["rows"].value)  # unknown table or row: one line, before any work
    context = Context(scale=FLAGS["scale"].value, results_dir=FLAGS["results_dir"].value,
                      data_root=FLAGS["data_root"].value, work_dir=FLAGS["work_dir"].value,
                      features_dir=FLAGS["features_dir"].value, inception_checkpoint=FLAGS["inception_checkpoint"].value,
                      resnet_weights=FLAGS["resnet_weights"].value, strategy=FLAGS["strategy"].value,
                      max_splits=FLAGS["max_splits"].value, verbose=FLAGS["verbose"].value, seed=FLAGS["seed"].value)
    outcome = run_table(table, context, FLAGS["rows"].value)
    print(f"{len(outcome['ran'])} row(s) run, {len(outcome['skipped'])} already finished, "
          f"{len(outcome['failed'])} failed; results: {outcome['csv']} and {outcome['md']}")
    for row_id, error in outcome["failed"].items():
        print(f"  failed: {row_id}: {error}")
    return 1 if outcome["failed"] else 0


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
