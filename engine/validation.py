"""Validation during training, shared by every training binary (`--eval_every`): a few TRAINING identities held out
of the training list, and a hook that evaluates on them every N steps and writes `val/<name>` scalars.

The held-out identities are a seeded draw (`hold_out`, a function of the seed and the identities only), so a resumed
run holds out the same ones. They are not trained on, which changes what the model learns: validation is opt-in
(`eval_every=0`, the default, trains on every identity). Query and gallery lists of a dataset are never touched.

The validation images are split into query and gallery by camera (`query_mask`): an identity's images of its
first camera (lowest camid) are its queries, its images of the other cameras its gallery items. Identities seen by
one camera only join the gallery as distractors. Under the Market-1501 protocol (same identity, same camera
removed) every query then has its true matches in the gallery and only there.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from data.record import Sample, relabel
from engine import summaries

FRACTION = 0.1  # of the training identities held out ...
MIN_IDENTITIES = 2  # ... at least this many (a ranking needs distractors) ...
MAX_IDENTITIES = 100  # ... at most this many (an evaluation every N steps must stay cheap)
EVAL_EVERY_HELP = ("Every this many steps, evaluate on a few training identities held out of training (seeded by "
                   "--seed; 10% of them, 2 to 100) and write val/... TensorBoard scalars; 0: no validation, train "
                   "on every identity.")
_SALT = 0x7A11D  # keeps the draw independent of the other generators seeded with the same seed


def num_held_out(num_identities: int) -> int:
    """How many of `num_identities` training identities validation holds out: FRACTION of them, rounded, within
    [MIN_IDENTITIES, MAX_IDENTITIES]; ValueError when fewer than MIN_IDENTITIES would remain to train on."""
    count = min(max(MIN_IDENTITIES, int(round(FRACTION * num_identities))), MAX_IDENTITIES)
    if num_identities - count < MIN_IDENTITIES:
        raise ValueError(f"validation needs {count} held-out training identities and {MIN_IDENTITIES} to train on, "
                         f"but the training list has {num_identities}: train without --eval_every")
    return count


def hold_out(pids, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose identity is held out for validation (`num_held_out` identities drawn with
    `seed`)."""
    pids = np.asarray(pids)
    identities = np.unique(pids)
    chosen = np.random.default_rng([_SALT, seed]).choice(identities, num_held_out(len(identities)), replace=False)
    return np.isin(pids, chosen)


def split_samples(samples: Sequence[Sample], seed: int) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """(training samples relabelled 0..P'-1 for a classifier, validation samples) of a Record's train list."""
    held = hold_out([s.pid for s in samples], seed)
    train = relabel([s for s, h in zip(samples, held) if not h])
    return train, tuple(s for s, h in zip(samples, held) if h)


def query_mask(pids, camids) -> np.ndarray:
    """Boolean mask of the validation rows that are queries (see the module docstring); the others are gallery.

    ValueError when no identity was seen by two cameras (nothing to retrieve)."""
    pids, camids = np.asarray(pids), np.asarray(camids)
    first_camera = {pid: camids[pids == pid].min() for pid in np.unique(pids)}
    two_cameras = {pid for pid in first_camera if (camids[pids == pid] != first_camera[pid]).any()}
    mask = np.array([pid in two_cameras and cam == first_camera[pid] for pid, cam in zip(pids, camids)], bool)
    if not mask.any():
        raise ValueError("no held-out validation identity has images of two cameras: there is nothing to retrieve")
    return mask


def split_query_gallery(samples: Sequence[Sample]) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """(query, gallery) samples of the validation identities, by `query_mask`."""
    mask = query_mask([s.pid for s in samples], [s.camid for s in samples])
    return (tuple(s for s, m in zip(samples, mask) if m), tuple(s for s, m in zip(samples, mask) if not m))


def retrieval_scalars(result: Mapping, prefix: str = "") -> dict[str, float]:
    """{mAP, rank1, mINP} (names prefixed) of a `data.evaluation.evaluate` result."""
    return {f"{prefix}mAP": float(result["mAP"]), f"{prefix}rank1": float(result["cmc"][0]),
            f"{prefix}mINP": float(result["mINP"])}


class EvalHook:
    """A `Trainer` hook: every `every` steps, `evaluate() -> {name: float}`, printed, logged and written as the
    TensorBoard scalars `<prefix>/<name>` to the default summary writer (the Trainer's `<train_dir>/train`).

    `history` keeps [(step, values)] of every evaluation of this process.
    """

    def __init__(self, evaluate: Callable[[], Mapping[str, float]], every: int, prefix: str = "val"):
        if every < 1:
            raise ValueError(f"eval_every must be >= 1 for an EvalHook, got {every}")
        self.evaluate, self.every, self.prefix = evaluate, every, prefix
        self.history: list[tuple[int, dict[str, float]]] = []

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        del metrics
        if step % self.every:
            return
        values = {name: float(value) for name, value in self.evaluate().items()}
        for name, value in values.items():
            summaries.scalar(f"{self.prefix}/{name}", value, step)
        tf.summary.flush()
        line = f"step {step} validation: " + " ".join(f"{name} {value:.4f}" for name, value in values.items())
        print(line, flush=True)
        logging.info("%s", line)
        self.history.append((step, values))
