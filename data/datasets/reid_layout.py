"""What the Market-1501, DukeMTMC-reID, MSMT17 and synthetic readers share: Market-style file names, the
three-folder layout, finding the dataset folder under a user's root, and checking the official counts.

Market-style names start with `<pid>_c<camera>` (`0002_c1s1_000451_03.jpg` in Market-1501, `0001_c2_f0046182.jpg`
in DukeMTMC-reID); a dataset-specific tail follows. pid -1 marks junk images (dropped everywhere), pid 0 marks
distractors (kept in the gallery as negatives, dropped from train and query where no true match exists).
Cameras are numbered from 1 on disk and from 0 in a `Sample`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Iterable, Mapping

from data.datasets.common import fixed_split, list_images, require_dir  # noqa: F401 (readers use fixed_split from here)
from data.record import DatasetError, Record, Sample, relabel

JUNK_PID = -1
DISTRACTOR_PID = 0
SUBSET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}

Counts = Mapping[str, tuple[int, int, int]]


@dataclasses.dataclass(frozen=True)
class NamingScheme:
    """How a Market-style file name encodes identity and camera.

    Attributes:
      tail: regular expression of what follows `<pid>_c<camera>` in the file's stem (without extension).
      example: a valid name, quoted in error messages.
      num_cameras: cameras are numbered 1..num_cameras on disk; anything else is an error.
      max_pid: the largest valid pid, or None where the dataset publishes none.
    """

    tail: str
    example: str
    num_cameras: int
    max_pid: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "_regex", re.compile(r"(-1|\d+)_c(\d+)" + self.tail))

    def parse(self, path: str) -> tuple[int, int]:
        """(pid, 0-based camid) of the image at `path`; a DatasetError naming `path` if the name is malformed."""
        match = self._regex.fullmatch(os.path.splitext(os.path.basename(path))[0])
        if match is None:
            raise DatasetError(f"{path}: malformed image name, expected a name like {self.example}")
        pid, camera = int(match.group(1)), int(match.group(2))
        check_camera(camera, self.num_cameras, path)
        if self.max_pid is not None and pid > self.max_pid:
            raise DatasetError(f"{path}: identity {pid} is outside 0..{self.max_pid}")
        return pid, camera - 1


def check_camera(camera: int, num_cameras: int, where: str) -> None:
    """Raise a DatasetError naming `where` unless the 1-based `camera` is in 1..num_cameras."""
    if not 1 <= camera <= num_cameras:
        raise DatasetError(f"{where}: camera {camera} is outside 1..{num_cameras}")


def find_dataset_dir(root: str, candidates: Iterable[str], is_dataset_dir: Callable[[str], bool],
                     what: str) -> str:
    """The dataset folder: `root` itself if it is one, else the one folder among `root/<candidate>` that is.

    Users point `--data_root` either at the dataset folder or at the folder that holds it under its usual name
    (e.g. `Market-1501-v15.09.15`); more than one match is ambiguous and an error.
    """
    require_dir(root, f"{what} root folder")
    if is_dataset_dir(root):
        return root
    found = []
    for candidate in candidates:
        path = os.path.join(root, candidate)
        if os.path.isdir(path) and is_dataset_dir(path) and not any(os.path.samefile(path, f) for f in found):
            found.append(path)
    if len(found) > 1:
        raise DatasetError(f"{root}: holds several {what} folders ({', '.join(found)}); pass one of them as root")
    if not found:
        raise DatasetError(f"{root}: no {what} found here nor in any of {', '.join(candidates)}")
    return found[0]


def is_market_style_dir(path: str) -> bool:
    """Whether `path` holds the three folders of a Market-style layout."""
    return all(os.path.isdir(os.path.join(path, folder)) for folder in SUBSET_FOLDERS.values())


def read_folder(folder: str, naming: NamingScheme, keep_distractors: bool) -> list[Sample]:
    """Samples of every image in `folder`, junk dropped, distractors kept only if `keep_distractors`."""
    samples = []
    for name in list_images(folder):
        path = os.path.join(folder, name)
        pid, camid = naming.parse(path)
        if pid == JUNK_PID or (pid == DISTRACTOR_PID and not keep_distractors):
            continue
        samples.append(Sample(path, pid, camid))
    return samples


@dataclasses.dataclass(frozen=True)
class MarketStyleDataset:
    """A dataset in the Market-1501 layout: `bounding_box_train/`, `query/` and `bounding_box_test/`.

    Attributes:
      name: registry name, written into the Record.
      title: the dataset's published name, for messages.
      folder_names: names under which the dataset folder may sit inside a user's root.
      naming: the file-name scheme.
      official_counts: published (identities, images, cameras) per subset after junk removal, or None.
    """

    name: str
    title: str
    folder_names: tuple[str, ...]
    naming: NamingScheme
    official_counts: Counts | None = None

    def load(self, root: str, split: str | None = None, check_counts: bool | None = None) -> Record:
        """Read the dataset from `root` (its folder, or a folder holding it under one of `folder_names`).

        Train pids are relabelled 0..P-1; query and gallery keep the pids of the file names.

        Args:
          root: where the dataset lies.
          split: must be None (one fixed split).
          check_counts: compare with `official_counts` (see `check_official_counts`); None does so only when the
            image count equals the official one.
        """
        require_single_split(self.name, split)
        dataset_dir = find_dataset_dir(root, self.folder_names, is_market_style_dir, self.title)
        subsets = {}
        for subset, folder in SUBSET_FOLDERS.items():
            samples = read_folder(os.path.join(dataset_dir, folder), self.naming,
                                  keep_distractors=subset == "gallery")
            if not samples:
                raise DatasetError(f"{os.path.join(dataset_dir, folder)}: no {subset} images")
            subsets[subset] = samples
        record = Record(self.name, relabel(subsets["train"]), tuple(subsets["query"]), tuple(subsets["gallery"]))
        check_official_counts(record, dataset_dir, self.official_counts, check_counts)
        return record


def check_official_counts(record: Record, where: str, official: Counts | None, check_counts: bool | None) -> None:
    """Compare the record's (identities, images, cameras) per subset with the dataset's published numbers.

    `check_counts=None` checks only when the record holds exactly as many images as the official split, i.e. when
    the folder looks like the full official release (so that tiny or edited copies still load); True always
    checks; False never does. A mismatch is a DatasetError naming `where` and both numbers.
    """
    if official is None or check_counts is False:
        return
    counts = record.counts()
    if check_counts is None and sum(n for _, n, _ in counts.values()) != sum(n for _, n, _ in official.values()):
        return
    wrong = [f"{subset} has {counts[subset]}, official {tuple(official[subset])}"
             for subset in official if tuple(counts[subset]) != tuple(official[subset])]
    if wrong:
        raise DatasetError(f"{where}: {record.name} counts (identities, images, cameras) differ from the official "
                           f"split: {'; '.join(wrong)}. Pass check_counts=False to read a modified copy.")


def require_single_split(name: str, split: str | None) -> None:
    """Datasets with one fixed split accept only `split=None`."""
    if split is not None:
        raise DatasetError(f"{name} has one fixed train/query/gallery split; got split={split!r}")
