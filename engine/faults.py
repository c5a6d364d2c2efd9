"""Named fault points: a test hook that kills this process with SIGKILL at a chosen point of a run.

Tests of crash safety need the crash to happen at an exact place (after step 5, between a checkpoint's files and
its index, halfway through a results file), not after a sleep. Engine code calls `point(name, step)` at those
places; with the environment variable `REID_FAULT=<name>:<step>` (several separated by commas) set, the process
kills itself there with SIGKILL: no `finally`, no atexit, no flush, as a power cut or the OOM killer would.
Without the variable a point costs one dictionary lookup.

Points (the `step` is the training step just completed, or the item count of a writer):
  step               after a training step (before its hooks and checkpoint)
  checkpoint_data    after a checkpoint's .data is renamed into place, before its .index
  checkpoint_files   after a checkpoint's .data and .index are written, before the `checkpoint` state file
  checkpoint_state   after the state file, before older checkpoints are deleted
  results_row        in `experiments.results`, after a row's bytes are half written to the temporary file
  synthetic_staged   in the synthetic generator, after the dataset is complete in its temporary folder, before
                     it is renamed into place (the step: its number of images)
"""
from __future__ import annotations

import os
import signal

ENVIRONMENT = "REID_FAULT"
POINTS = ("step", "checkpoint_data", "checkpoint_files", "checkpoint_state", "results_row", "synthetic_staged")


def armed() -> dict[str, set[int]]:
    """{point: steps} that `REID_FAULT` asks for; ValueError naming the variable when it is malformed."""
    armed_points: dict[str, set[int]] = {}
    for item in filter(None, os.environ.get(ENVIRONMENT, "").split(",")):
        name, _, step = item.partition(":")
        if name not in POINTS or not step.lstrip("-").isdigit():
            raise ValueError(f"{ENVIRONMENT}={os.environ[ENVIRONMENT]!r}: expected <point>:<step>[,...] with a "
                             f"point of {', '.join(POINTS)}")
        armed_points.setdefault(name, set()).add(int(step))
    return armed_points


def point(name: str, step: int) -> None:
    """Kill this process with SIGKILL if `REID_FAULT` names (`name`, `step`); else return at once."""
    assert name in POINTS, f"unknown fault point {name!r}: add it to engine.faults.POINTS"
    if ENVIRONMENT in os.environ and int(step) in armed().get(name, ()):
        os.kill(os.getpid(), signal.SIGKILL)
