"""The dataset record every reader returns and every binary consumes.

A record holds the three lists of a re-ID protocol, each a tuple of `Sample(path, pid, camid)`:
`train` (pids relabelled 0..P-1 so they can index a classifier), `query` and `gallery` (original pids, so that
results can be traced back to files; distractors keep pid 0 in the gallery, junk images with pid -1 never appear).
`protocol` names the evaluation rule in `data.evaluation` that the dataset's papers use.
"""
from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple, Sequence


class Sample(NamedTuple):
    """One image: its path on disk, its identity and its camera (ints; both None for an unlabelled image of a
    search-mode list, `data.datasets.csv_lists`)."""

    path: str
    pid: int
    camid: int


class DatasetError(ValueError):
    """A dataset on disk does not have the layout its reader expects; the message names the file (and line)."""


def _check_utf8(path: str) -> None:
    """A DatasetError naming `path` unless it is UTF-8: a file name with other bytes (decoded by Python with
    surrogate escapes) cannot become a TensorFlow string or a line of a UTF-8 output file, and would fail there with
    an error that names nothing."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", errors="backslashreplace")
        raise DatasetError(f"{shown}: the image path is not UTF-8; rename the file or folder") from None


@dataclasses.dataclass(frozen=True)
class Record:
    """Train / query / gallery lists of one dataset split, plus the protocol that evaluates it.

    Attributes:
      name: the dataset's registry name (`data.datasets.names()`).
      train, query, gallery: tuples of `Sample`; every path must be UTF-8 (a DatasetError naming it otherwise).
      protocol: `"market1501"` (same-pid-same-camera gallery items are removed per query), `"single_shot"`
        (CUHK03 / CUHK01: one random gallery image per identity per trial) or `"vehicleid"` (single shot,
        no camera rule); see `data.evaluation.evaluate`.
      split: a human-readable name of the split this record holds (e.g. `"random-3"`, `"test800/trial-2"`).
    """

    name: str
    train: tuple[Sample, ...]
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]
    protocol: str = "market1501"
    split: str = ""

    def __post_init__(self):
        for field in ("train", "query", "gallery"):
            samples = tuple(Sample(*s) for s in getattr(self, field))
            for sample in samples:
                _check_utf8(sample.path)
            object.__setattr__(self, field, samples)

    @staticmethod
    def _count(samples: Sequence[Sample]) -> tuple[int, int, int]:
        # Unlabelled samples (search mode, pid and camid None) count as images only.
        return (len({s.pid for s in samples} - {None}), len(samples), len({s.camid for s in samples} - {None}))

    def is_labelled(self, subset: str) -> bool:
        """Whether every sample of `subset` ("train", "query", "gallery") has a pid and a camid (search-mode
        lists of the csv dataset have none)."""
        return all(s.pid is not None and s.camid is not None for s in getattr(self, subset))

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """(identities, images, cameras) of each list, the numbers dataset papers publish."""
        return {"train": self._count(self.train), "query": self._count(self.query),
                "gallery": self._count(self.gallery)}

    def summary(self) -> str:
        """A torchreid-style table of the counts, for logs."""
        rows = [f"Dataset {self.name}" + (f" ({self.split})" if self.split else "") + f", protocol {self.protocol}",
                "  subset   | # ids | # images | # cameras"]
        for subset, (ids, images, cams) in self.counts().items():
            rows.append(f"  {subset:<8} | {ids:5d} | {images:8d} | {cams:9d}")
        return "\n".join(rows)


def relabel(samples: Sequence[Sample]) -> tuple[Sample, ...]:
    """Map the pids of `samples` onto 0..P-1 in order of first sorted appearance (training labels)."""
    mapping = {pid: label for label, pid in enumerate(sorted({s.pid for s in samples}))}
    return tuple(Sample(s.path, mapping[s.pid], s.camid) for s in samples)
