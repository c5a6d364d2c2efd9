r"""Regenerate a table of the KVM-MN or ACP paper beside the paper's own numbers.

    python -m experiments.run --list
    python -m experiments.run --table=acp_table3 --scale=paper                  # analytic, seconds
    python -m experiments.run --table=acp_table5 --scale=smoke                  # every row on synthetic data, CPU
    python -m experiments.run --table=acp_table5 --scale=paper --data_root=/data \
        --resnet_weights=/models/resnet50_notop.h5 --rows=msmt17/none,msmt17/acp
    python -m experiments.run --table=kvmmn_table3 --scale=paper --data_root=/data \
        --inception_checkpoint=/models/inception_v1.ckpt --strategy=mirrored

Each row is trained (where it needs training) and evaluated by the library functions the packages' binaries call
(`experiments.runners`); its numbers go into `<results_dir>/<table>.csv` as soon as it finishes and
`<results_dir>/<table>.md` is rewritten, with ours, the paper's and the difference (`experiments.results`). Rows
already in the CSV are skipped, and training runs resume from their checkpoints under `<results_dir>/work/<scale>`,
so a killed run started again continues where it stopped. A row that fails is reported and the others still run;
the exit status is then 1.

Every source of randomness is seeded from --seed (default 0): each training run with it, and the global generators
again before each row, so a row's numbers do not depend on the rows run before it in the same process; two runs
give the same table and a resumed run the rows of an uninterrupted one. The seed is in each row's `info`.

`--scale=smoke` runs every row on the synthetic dataset (whatever the row's dataset) with a few training steps of
toy-sized models on the CPU: a check that the whole table runs, not a reproduction.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402
import traceback  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from engine import distribute  # noqa: E402
from engine import seed as engine_seed  # noqa: E402
from engine.flags import declare_once  # noqa: E402
from experiments import tables  # noqa: E402
from experiments.context import SCALES, Context  # noqa: E402
from experiments.results import ResultsError, ResultStore  # noqa: E402
from experiments.runners import runner  # noqa: E402

# Flags other binaries also declare (they may share this process, as in the tests) go through declare_once.
declare_once(flags.DEFINE_string, "table", None, "Table to regenerate (see --list).")
declare_once(flags.DEFINE_list, "rows", [], "Only these row ids of the table (comma-separated; see --list).")
flags.DEFINE_enum("scale", "smoke", list(SCALES), "paper: each row on its own dataset with the paper's recipe; "
                  "smoke: every row on the synthetic dataset with a few training steps on the CPU.")
declare_once(flags.DEFINE_string, "data_root", None, "Folder holding the datasets under their usual folder names "
             "(or one dataset's folder); at smoke scale, where the synthetic dataset is generated (default: its "
             "cache folder).")
declare_once(flags.DEFINE_string, "results_dir", "results", "Where <table>.csv and <table>.md are written.")
flags.DEFINE_string("work_dir", None, "Trained models and feature files (default <results_dir>/work/<scale>).")
flags.DEFINE_string("features_dir", None, "Feature files of the re-ranking tables: used when present, written when "
                    "missing (default <work_dir>/features; names in experiments.runners.feature_files).")
flags.DEFINE_string("inception_checkpoint", None, "TF-slim inception_v1.ckpt (KVM-MN tables, paper scale).")
flags.DEFINE_string("resnet_weights", None, "Keras ImageNet ResNet-50 weights without top (re-ID baseline of the ACP "
                    "tables, paper scale; only needed when feature files must be extracted).")
declare_once(flags.DEFINE_enum, "strategy", "one_device", "tf.distribute strategy of training.",
             enum_values=list(distribute.STRATEGIES))
flags.DEFINE_integer("max_splits", None, "Evaluate only the first N splits of multi-split protocols (CUHK03 / CUHK01 "
                     "10 splits, VehicleID 10 galleries); default all, as the papers.", lower_bound=1)
flags.DEFINE_bool("list", False, "List the tables (or the rows of --table) with the paper's numbers, and exit.")
declare_once(flags.DEFINE_integer, "seed", 0, "Seed of every random generator (initialisers, samplers, augmentation, "
             "dropout); recorded in each row's info.")
declare_once(flags.DEFINE_integer, "verbose", 1, "0: quiet; 1: progress bars of training; 2: also of re-ranking.")
FLAGS = flags.FLAGS


def list_tables(name: str | None = None) -> str:
    """The text of `--list`: every table with its rows, or the rows of table `name` with their settings."""
    if name is None:
        lines = []
        for table_name in tables.names():
            table = tables.get(table_name)
            lines.append(f"{table.name:<14} {table.source}: {table.title} ({len(table.rows)} rows)")
            lines.append("    rows: " + ", ".join(row.row_id for row in table.rows))
        return "\n".join(lines)
    table = tables.get(name)
    lines = [f"{table.name}: {table.source}: {table.title}", "metrics: " + ", ".join(
        f"{m.key} ({m.unit})" for m in table.metrics)]
    for row in table.rows:
        paper = ", ".join(f"{k}={v:g}" for k, v in row.paper.items() if v is not None) or "no paper numbers"
        lines.append(f"  {row.row_id:<28} {row.runner:<10} {row.data.title or row.data.label:<32} paper: {paper}")
    return "\n".join(lines)


def run_table(table_name: str, context: Context, row_ids=(), log=print) -> dict:
    """Run the unfinished rows (`row_ids`, default all) of a table and write its results.

    Returns {"csv", "md", "ran": [row ids], "skipped": [row ids already finished], "failed": {row id: error}}.
    """
    table = tables.get(table_name)
    rows = table.select(list(row_ids))
    store = ResultStore(table, context.results_dir, context.scale)
    done = store.finished()
    keys = {m.key for m in table.metrics}
    outcome = {"csv": store.csv_path, "md": store.md_path, "ran": [], "skipped": [], "failed": {}}
    if context.smoke:
        log(f"{table.name}: SMOKE scale: every dataset is replaced by the synthetic dataset, with tiny models and "
            "step counts; the numbers are not comparable with the paper's.")
    for number, row in enumerate(rows, start=1):
        if row.row_id in done:
            outcome["skipped"].append(row.row_id)
            continue
        log(f"[{number}/{len(rows)}] {table.name} row {row.row_id} on {context.describe(row.data)}")
        started = time.perf_counter()
        engine_seed.set_seed(context.seed)  # whatever ran before in this process (a resumed run skips rows)
        try:
            result = runner(row.runner)(row, context)
        except Exception as error:  # one failed row must not stop the others; it is reported and retried later
            logging.error("row %s failed:\n%s", row.row_id, traceback.format_exc())
            outcome["failed"][row.row_id] = f"{type(error).__name__}: {error}"
            log(f"    FAILED: {outcome['failed'][row.row_id]}")
            continue
        values = {key: value for key, value in result.values.items() if key in keys}
        store.record(row, values, context.describe(row.data), time.perf_counter() - started,
                     {**result.info, "seed": context.seed})
        outcome["ran"].append(row.row_id)
        log("    " + ", ".join(f"{key} {value:.4g}" + (f" (paper {row.paper[key]:g})" if row.paper.get(key)
                                                          is not None else "") for key, value in values.items()))
    store.write_markdown()
    return outcome


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.list:
        print(list_tables(FLAGS.table))
        return 0
    if not FLAGS.table:
        raise app.UsageError(f"--table is required; one of: {', '.join(tables.names())} (or --list)")
    try:
        tables.get(FLAGS.table).select(FLAGS.rows)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    context = Context(scale=FLAGS.scale, results_dir=FLAGS.results_dir, data_root=FLAGS.data_root,
                      work_dir=FLAGS.work_dir, features_dir=FLAGS.features_dir,
                      inception_checkpoint=FLAGS.inception_checkpoint, resnet_weights=FLAGS.resnet_weights,
                      strategy=FLAGS.strategy, max_splits=FLAGS.max_splits, verbose=FLAGS.verbose, seed=FLAGS.seed)
    try:
        outcome = run_table(FLAGS.table, context, FLAGS.rows)
    except ResultsError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{len(outcome['ran'])} row(s) run, {len(outcome['skipped'])} already finished, "
          f"{len(outcome['failed'])} failed; results: {outcome['csv']} and {outcome['md']}")
    for row_id, error in outcome["failed"].items():
        print(f"  failed: {row_id}: {error}")
    return 1 if outcome["failed"] else 0


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
