"""reid-experiments under faults (issues 20-21): the results CSV never reads a cut row as finished, a run killed
while writing it keeps the previous file, and a table run killed in the middle of a row's training and resumed gives
the numbers of an uninterrupted run (seeded from --seed; the seed is recorded)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from engine import faults
from experiments import results, run, tables
from experiments.context import Context
from test_experiments import write_feature_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TABLE = tables.get("acp_table3")  # analytic rows: three metrics each


def recorded_store(results_dir, rows=("ACP-Basic", "ACP-XL")):
    store = results.ResultStore(TABLE, str(results_dir), "smoke")
    for number, row_id in enumerate(rows):
        store.record(TABLE.row(row_id), {m.key: 10.0 * number + i for i, m in enumerate(TABLE.metrics)},
                     "no data", 1.5, {"seed": 0, "note": "a, \"quoted\" value"})
    return store


def test_a_results_csv_cut_at_any_byte_never_reads_as_a_finished_row_it_does_not_hold(tmp_path):
    store = recorded_store(tmp_path / "full")
    content = open(store.csv_path, "rb").read()
    complete = store.values()
    # where each row's last line ends: the row is finished in a cut at or after that byte, and only then
    ends, position = {}, 0
    for line in content.splitlines(keepends=True):
        position += len(line)
        row = next(csv.reader([line.decode()]))[0]
        ends[row] = position
    assert sorted(ends) == ["ACP-Basic", "ACP-XL", "row"]
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    for cut in range(len(content) + 1):
        (cut_dir / "acp_table3.csv").write_bytes(content[:cut])
        store = results.ResultStore(TABLE, str(cut_dir), "smoke")
        expected = {row for row in ("ACP-Basic", "ACP-XL") if ends[row] <= cut}
        assert store.finished() == expected, f"cut at byte {cut} of {len(content)}"
        assert all(store.values()[row] == complete[row] for row in expected)


def test_a_run_killed_while_writing_the_csv_keeps_the_previous_file(tmp_path):
    store = recorded_store(tmp_path, rows=("ACP-Basic",))
    before = open(store.csv_path, "rb").read()
    script = ("import sys; from experiments import results, tables; t = tables.get('acp_table3'); "
              "s = results.ResultStore(t, sys.argv[1], 'smoke'); "
              "s.record(t.row('ACP-XL'), {m.key: 1.0 for m in t.metrics}, 'no data', 1.0)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, faults.ENVIRONMENT: "results_row:6", "TF_CPP_MIN_LOG_LEVEL": "3"},
                          timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    leftovers = [name for name in os.listdir(tmp_path) if ".tmp-" in name]
    assert len(leftovers) == 1  # the killed writer's half temporary, beside an intact CSV
    assert open(store.csv_path, "rb").read() == before
    store = results.ResultStore(TABLE, str(tmp_path), "smoke")
    assert store.finished() == {"ACP-Basic"}
    store.record(TABLE.row("ACP-XL"), {m.key: 1.0 for m in TABLE.metrics}, "no data", 1.0)
    assert store.finished() == {"ACP-Basic", "ACP-XL"}
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]  # the next write removed it


def test_a_table_killed_in_a_rows_training_and_resumed_gives_the_uninterrupted_numbers(tmp_path):
    features_dir = tmp_path / "features"
    features_dir.mkdir()
    write_feature_file(features_dir / "synthetic.npz")
    rows = ["k_reciprocal/k2=6", "acp/k2=2"]

    def context(name):
        return Context(scale="smoke", results_dir=str(tmp_path / name), features_dir=str(features_dir), verbose=0)

    # the ACP row runs first: killed after step 6 of its training's 8 (checkpoint at 4)
    done = subprocess.run([sys.executable, "-m", "experiments.run", "--table=acp_fig12", f"--rows={','.join(rows)}",
                           f"--results_dir={tmp_path / 'killed'}", f"--features_dir={features_dir}", "--verbose=0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, faults.ENVIRONMENT: "step:6", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == -9, done.stderr[-3000:]
    resumed = run.run_table("acp_fig12", context("killed"), rows, log=lambda text: None)
    clean = run.run_table("acp_fig12", context("clean"), rows, log=lambda text: None)
    for outcome in (resumed, clean):
        assert outcome["ran"] == ["acp/k2=2", "k_reciprocal/k2=6"] and not outcome["failed"]

    def numbers(outcome):
        with open(outcome["csv"], newline="") as handle:
            lines = list(csv.DictReader(handle))
        assert {json.loads(line["info"])["seed"] for line in lines} == {0}
        return {(line["row"], line["metric"]): line["ours"] for line in lines}

    assert numbers(resumed) == numbers(clean)
