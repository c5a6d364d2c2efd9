"""Results of a table, row by row: `results/<table>.csv` (the record, rewritten whole after each finished row) and
`results/<table>.md` (rewritten from the CSV after every row), each with our number, the paper's and the
difference.

CSV format (one line per row and metric, in the table's metric order; `csv` module quoting):

| column | holds |
|---|---|
| row | the row id (`experiments.tables.Row.row_id`) |
| metric | the metric key (rank-1, mAP, time, params_M, ...) |
| ours, paper, diff | our value, the paper's, ours - paper, in the metric's unit; empty where there is none |
| unit | "%", "s", "M", "G" |
| scale | "smoke" or "paper": the scale of `experiments.run` that produced the line |
| data | the data the row actually ran on (at smoke scale: "synthetic (stand-in for <dataset>)") |
| seconds | wall time of the row (training included) |
| info | JSON of what the runner resolved (parameters used, splits, checkpoints) |

A row is finished when all its metric lines are in the CSV; a run skips finished rows, so a killed run resumes
where it stopped. Both files are written atomically (`engine.atomic`: a temporary beside them, then renamed), so a
run killed while writing leaves the previous complete file. A file cut short some other way (a full disk, a
partial copy, an older version that appended in place) never reads as more than it holds: a last line without its
line end is dropped, and a row counts only when all its metric lines are complete. One CSV holds one scale: a run
at the other scale is refused rather than mixing them. Each row's `info` records the `seed` it ran with.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Mapping

from engine import atomic, faults
from experiments.tables import Row, Table

COLUMNS = ("row", "metric", "ours", "paper", "diff", "unit", "scale", "data", "seconds", "info")


class ResultsError(ValueError):
    """A results file that cannot be continued (another scale, or not a results CSV); names the file."""


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.10g}"


def _parse(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


class ResultStore:
    """The CSV and Markdown results of one table in `results_dir` at one `scale` (None: to read a file at
    whichever scale it holds)."""

    def __init__(self, table: Table, results_dir: str, scale: str | None):
        self.table = table
        self.scale = scale
        self.results_dir = results_dir
        self.csv_path = os.path.join(results_dir, f"{table.name}.csv")
        self.md_path = os.path.join(results_dir, f"{table.name}.md")
        self._metric_keys = [m.key for m in table.metrics]
        self.lines = self._read()

    def _read(self) -> list[dict]:
        if not os.path.exists(self.csv_path):
            return []
        with open(self.csv_path, newline="") as handle:
            text = handle.read()
        # a last line without its line end was cut short: whatever it holds is not a finished line
        reader = csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1], newline=""))
        if reader.fieldnames is None:
            return []
        if tuple(reader.fieldnames) != COLUMNS:
            raise ResultsError(f"{self.csv_path}: columns {reader.fieldnames} are not those of an experiments "
                               f"results file {list(COLUMNS)}; move it away or pass another --results_dir")
        lines = []
        for number, line in enumerate(reader, start=2):
            if None in line.values() or None in line:  # a line cut short by a killed run
                continue
            if self.scale is None:
                self.scale = line["scale"]  # reading only: take the file's scale
            if line["scale"] != self.scale:
                raise ResultsError(f"{self.csv_path} line {number} holds {line['scale']}-scale results; this "
                                   f"run is at {self.scale} scale: pass another --results_dir or remove the file")
            try:
                for key in ("ours", "paper", "diff", "seconds"):
                    _parse(line[key])
            except ValueError:
                continue
            lines.append(line)
        return lines

    def finished(self) -> set:
        """Ids of the rows whose every metric line is in the CSV."""
        seen = {}
        for line in self.lines:
            seen.setdefault(line["row"], set()).add(line["metric"])
        return {row for row, metrics in seen.items() if metrics >= set(self._metric_keys)}

    def _complete_lines(self) -> list[dict]:
        done = self.finished()
        return [line for line in self.lines if line["row"] in done]

    def record(self, row: Row, values: Mapping, data: str, seconds: float, info: Mapping | None = None) -> None:
        """Append the finished `row` (`values`: metric -> our value, missing or None where the runner has none)
        and rewrite the Markdown. The row's lines go out in one write, flushed to disk."""
        if self.scale is None:
            raise ResultsError(f"{self.csv_path}: a store opened for reading (scale None) cannot record rows")
        unknown = sorted(set(values) - set(self._metric_keys))
        if unknown:
            raise ValueError(f"table {self.table.name} row {row.row_id}: values for unknown metrics {unknown}")
        info_text = json.dumps(info or {}, sort_keys=True, default=str)
        new = []
        for metric in self.table.metrics:
            ours, paper = values.get(metric.key), row.paper.get(metric.key)
            diff = ours - paper if ours is not None and paper is not None else None
            new.append({"row": row.row_id, "metric": metric.key, "ours": _number(ours), "paper": _number(paper),
                        "diff": _number(diff), "unit": metric.unit, "scale": self.scale, "data": data,
                        "seconds": _number(seconds), "info": info_text})
        self.lines = self._complete_lines() + new  # a half-written row of an older file is dropped here
        self._write_csv(self.lines)
        self.write_markdown()

    def _write_csv(self, lines: list[dict]) -> None:
        """The whole CSV, atomically and flushed to disk (a few hundred lines at most: rewriting costs nothing)."""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, COLUMNS)
        writer.writeheader()
        writer.writerows(lines)
        content = buffer.getvalue().encode("utf-8")
        with atomic.atomic_path(self.csv_path) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(content[:len(content) // 2])
                handle.flush()
                faults.point("results_row", len(lines))  # a kill halfway through the temporary (tests)
                handle.write(content[len(content) // 2:])
                handle.flush()
                os.fsync(handle.fileno())

    # ------------------------------------------------------------------------------------------- Markdown
    def values(self) -> dict:
        """{row id: {metric: (ours, paper, diff)}, plus "_data", "_seconds"} of the finished rows."""
        out = {}
        for line in self._complete_lines():
            entry = out.setdefault(line["row"], {"_data": line["data"], "_seconds": _parse(line["seconds"])})
            entry[line["metric"]] = tuple(_parse(line[key]) for key in ("ours", "paper", "diff"))
        return out

    def markdown(self) -> str:
        """The Markdown report: title, provenance, notes and one line per finished row."""
        table, values = self.table, self.values()
        lines = [f"# {table.source}: {table.title}", ""]
        if self.scale == "smoke":
            lines += ["**Smoke scale**: every dataset is replaced by the synthetic dataset and every training run "
                      "takes a few steps on the CPU. These numbers check that the pipeline runs end to end; they "
                      "are not comparable with the paper's.", ""]
        lines += [f"- {note}" for note in table.notes]
        lines += [f"- Finished rows: {len(values)} of {len(table.rows)}. Columns: ours / paper / "
                  "difference (ours - paper); empty where there is no number.", ""]
        header = ["row", "data"]
        for metric in table.metrics:
            unit = f" ({metric.unit})" if metric.unit else ""
            header += [f"{metric.title}{unit} ours", "paper", "diff"]
        header += ["seconds", "note"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table.rows:
            if row.row_id not in values:
                continue
            entry = values[row.row_id]
            cells = [row.row_id, entry["_data"]]
            for metric in table.metrics:
                ours, paper, diff = entry.get(metric.key, (None, None, None))
                cells += [_format(ours, metric.unit), _format(paper, metric.unit),
                          _format(diff, metric.unit, signed=True)]
            cells += [_format(entry["_seconds"], "s"), row.note]
            lines.append("| " + " | ".join(cells) + " |")
        pending = [row.row_id for row in table.rows if row.row_id not in values]
        if pending:
            lines += ["", f"Pending rows ({len(pending)}): {', '.join(pending)}"]
        return "\n".join(lines) + "\n"

    def write_markdown(self) -> str:
        return atomic.write_text(self.md_path, self.markdown())


def _format(value, unit: str, signed: bool = False) -> str:
    if value is None:
        return ""
    sign = "+" if signed else ""
    if unit == "s":
        return f"{value:{sign}.3g}"
    if unit == "G":
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.2f}"
