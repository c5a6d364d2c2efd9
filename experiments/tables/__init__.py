"""The tables and figures of both papers as data: one `Row` per table row, with its configuration and the paper's
own numbers, grouped in `Table`s that `experiments.run` regenerates.

A row says what to run (`runner`: which function of `experiments.runners` runs it; `dataset`: on which evaluation
set; `settings`: the model / method configuration) and what to compare (`paper`: metric -> the paper's number,
None where the paper prints "-" or gives no number). Metrics are in the paper's units: percentages for CMC and mAP,
seconds for times, millions of parameters, billions of MACCs.

    from experiments import tables
    table = tables.get("acp_table5")
    for row in table.select(["msmt17/acp"]): ...

Registered tables (`names()`):

| name | source |
|---|---|
| kvmmn_table1 | KVM-MN Table 1, our rows (KVM-MN, KVM-MN-noAug) |
| kvmmn_table3 | KVM-MN Table 3, ablations Base and A-F |
| acp_table3 | ACP Table III, parameters and MACCs of ACP-Basic / ACP-XL |
| acp_table5 | ACP Table V, nine methods on six datasets (ten test sets) with time |
| acp_table7 | ACP Table VII, module ablation Exp-A..G |
| acp_table8, acp_table9, acp_table10 | ACP Tables VIII-X: encoder layers, heads, memory size |
| acp_fig10, acp_fig11 | ACP Figs. 10-11: CMC@1 and mAP versus k1 (MSMT17, VERI-Wild small) |
| acp_fig12 | ACP Fig. 12: mAP versus k2 (VERI-Wild small, k1 = 32) |
"""
from __future__ import annotations

import dataclasses
import types
from typing import Mapping, Sequence


def frozen(mapping: Mapping | None) -> Mapping:
    """A read-only copy of `mapping` (rows are shared module-level constants)."""
    return types.MappingProxyType(dict(mapping or {}))


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """An evaluation set: registry `dataset` with reader `options`, named `label` in file names and tables.

    `splits`: the evaluation splits to average (None: every split of `data.datasets.eval_splits`).
    """

    label: str
    dataset: str | None
    options: Mapping = dataclasses.field(default_factory=dict)
    splits: tuple | None = None
    title: str = ""

    def __post_init__(self):
        object.__setattr__(self, "options", frozen(self.options))

    @property
    def needs_data(self) -> bool:
        return self.dataset is not None


ANALYTIC = DataSpec("analytic", None, title="no data (analytic count)")


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: what to run and the paper's numbers.

    row_id: unique within its table (`--rows` names it). runner: a key of `experiments.runners.RUNNERS`.
    data: the evaluation set. settings: the runner's configuration of this row (see its runner).
    paper: metric -> the paper's number (None: none printed). note: reading choices specific to this row.
    """

    row_id: str
    runner: str
    data: DataSpec
    settings: Mapping
    paper: Mapping
    note: str = ""

    def __post_init__(self):
        object.__setattr__(self, "settings", frozen(self.settings))
        object.__setattr__(self, "paper", frozen(self.paper))


@dataclasses.dataclass(frozen=True)
class Metric:
    """A column of a table: `key` in the results, `title` in Markdown, `unit` for the reader."""

    key: str
    title: str
    unit: str = "%"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table (or a figure's data) of one paper: its rows, its metric columns and notes on reading it."""

    name: str
    title: str
    source: str
    metrics: tuple
    rows: tuple
    notes: tuple = ()

    def __post_init__(self):
        ids = [row.row_id for row in self.rows]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"table {self.name}: duplicate row ids {duplicates}")
        keys = {m.key for m in self.metrics}
        for row in self.rows:
            unknown = sorted(set(row.paper) - keys)
            if unknown:
                raise ValueError(f"table {self.name} row {row.row_id}: paper numbers for unknown metrics {unknown}")

    def row(self, row_id: str) -> Row:
        for row in self.rows:
            if row.row_id == row_id:
                return row
        raise KeyError(row_id)

    def select(self, row_ids: Sequence[str] | None = None) -> tuple:
        """The rows named in `row_ids` in table order (all rows for None or empty); unknown ids are a ValueError
        listing the table's ids."""
        if not row_ids:
            return self.rows
        known = [row.row_id for row in self.rows]
        unknown = [i for i in row_ids if i not in known]
        if unknown:
            raise ValueError(f"table {self.name} has no row(s) {unknown}; its rows: {', '.join(known)}")
        wanted = set(row_ids)
        return tuple(row for row in self.rows if row.row_id in wanted)


def _registry() -> dict:
    from experiments.tables import acp, kvmmn

    return {table.name: table for table in (*kvmmn.TABLES, *acp.TABLES)}


def names() -> tuple:
    """Names of every registered table, in the order of the papers."""
    return tuple(_registry())


def get(name: str) -> Table:
    """The table registered as `name`; an unknown name is a ValueError listing the known ones."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(registry)}")
    return registry[name]
