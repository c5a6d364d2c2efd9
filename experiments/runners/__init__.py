"""Row runners: `RUNNERS[row.runner](row, context) -> RowResult`, one function per kind of table row.

| runner | module | runs |
|---|---|---|
| acp_params | `acp_params` | ACP Table III: analytic parameter and MACC counts (`acp.params`) |
| rerank | `rerank` | ACP Tables V, VII-X, Figs. 10-12: a re-ranking method on a feature file, evaluated |
| kvmmn | `kvmmn_rows` | KVM-MN Tables 1 and 3: train a KVM-MN per split, evaluate, average |

Each runner calls the same library functions as the packages' binaries (acp.params, rerank.runner.evaluate_method,
acp.training.train, features.training.train, features.extraction.extract, kvmmn.training.train,
kvmmn.retrieval.evaluate_record).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping


@dataclasses.dataclass(frozen=True)
class RowResult:
    """Our numbers of a row (metric -> value in the paper's units) and what the runner resolved (`info`)."""

    values: Mapping
    info: Mapping = dataclasses.field(default_factory=dict)


def _runners() -> dict:
    from experiments.runners import acp_params, kvmmn_rows, rerank

    return {"acp_params": acp_params.run_row, "rerank": rerank.run_row, "kvmmn": kvmmn_rows.run_row}


def runner(name: str):
    """The runner function registered as `name` (ValueError listing the known ones)."""
    runners = _runners()
    if name not in runners:
        raise ValueError(f"unknown row runner {name!r}; known: {', '.join(runners)}")
    return runners[name]
