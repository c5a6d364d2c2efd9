r"""Regenerate a table of the KVM-MN or ACP paper beside the paper's own numbers (`run_table`; the binary is
`reid-experiments`, `experiments.cli.run`).

    reid-experiments --list
    reid-experiments --table=acp_table3 --scale=paper                  # analytic, seconds
    reid-experiments --table=acp_table5 --scale=smoke                  # every row on synthetic data, CPU
    reid-experiments --table=acp_table5 --scale=paper --data_root=/data \
        --resnet_weights=/models/resnet50_notop.h5 --rows=msmt17/none,msmt17/acp
    reid-experiments --table=kvmmn_table3 --scale=paper --data_root=/data \
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

import time
import traceback

from absl import logging

from engine import seed as engine_seed
from experiments import tables
from experiments.context import Context
from experiments.results import ResultStore
from experiments.runners import runner


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


if __name__ == "__main__":  # `python -m experiments.run`, as before the binary moved
    from experiments.cli.run import run

    run()
