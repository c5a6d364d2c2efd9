"""MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification", CVPR 2018).

Two releases with the same list files and different image folders:
  `MSMT17_V1/`: `train/`, `test/`;  `MSMT17_V2/` (faces blurred): `mask_train_v2/`, `mask_test_v2/`;
  both: `list_train.txt`, `list_val.txt` (images under the train folder), `list_query.txt`, `list_gallery.txt`
  (under the test folder). A list line is `<relative path> <pid>`, e.g. `0000/0000_000_01_0303morning_0015_0.jpg 0`;
  the file name is `<pid>_<index>_<camera>_<date+time of day>_<frame>_<track>`, cameras 1..15.
  Checked per line: the path stays inside its image folder, the name's pid is the list's, and no image is listed
  twice in train + val or in query + gallery.

Official counts: train 30,248 images of 1,041 identities (32,621 with the validation list, same identities), query
11,659 and gallery 82,161 images of 3,060 identities, 15 cameras. `include_val=False` is the default of FastReID and
torchreid ("to compare with published methods, do not add val images") and matches Table I of the ACP paper.

Test pids in the lists run from 0, but pid 0 means "distractor" in a `Record`; MSMT17 has no distractors, so query and
gallery pids are stored as list pid + 1 (paths stay exact). Protocol: `market1501`.
"""
from __future__ import annotations

import os

from data.datasets import reid_layout
from data.datasets.common import FolderIndex, inside, list_once, read_list, require_dir
from data.record import DatasetError, Record, Sample, relabel

NAME = "msmt17"
NUM_CAMERAS = 15
VERSIONS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LIST_FILES = {"train": "list_train.txt", "val": "list_val.txt", "query": "list_query.txt",
              "gallery": "list_gallery.txt"}
OFFICIAL_COUNTS = {"train": (1041, 30248, 15), "query": (3060, 11659, 15), "gallery": (3060, 82161, 15)}
OFFICIAL_TRAIN_WITH_VAL = (1041, 32621, 15)


def _folder_names(version: str | None) -> tuple[str, ...]:
    versions = [version] if version else list(VERSIONS)
    return tuple(f"{prefix}MSMT17_{v}" for prefix in ("", "msmt17/") for v in versions) + ("MSMT17", "msmt17")


def _is_msmt_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, LIST_FILES["train"]))


def _version_of(dataset_dir: str, version: str | None) -> str:
    """The release whose image folders `dataset_dir` holds (`version` if given)."""
    if version is not None:
        if version not in VERSIONS:
            raise DatasetError(f"unknown MSMT17 version {version!r}; expected one of {', '.join(VERSIONS)}")
        for folder in VERSIONS[version]:
            require_dir(os.path.join(dataset_dir, folder), f"MSMT17_{version} image folder")
        return version
    present = [v for v, folders in VERSIONS.items()
               if all(os.path.isdir(os.path.join(dataset_dir, f)) for f in folders)]
    if len(present) != 1:
        expected = " or ".join("/".join(folders) for folders in VERSIONS.values())
        problem = "both releases' image folders" if present else "no image folders"
        raise DatasetError(f"{dataset_dir}: {problem} ({expected}); pass version='V1' or 'V2'")
    return present[0]


def name_fields(relative_path: str) -> tuple[int, int]:
    """(pid, 1-based camera) of an MSMT17 image path: the first and third `_` fields of its name; ValueError if
    malformed."""
    fields = os.path.splitext(os.path.basename(relative_path))[0].split("_")
    if len(fields) < 3 or not fields[0].isdigit() or not fields[2].isdigit():
        raise ValueError("expected a name like 0000_000_01_0303morning_0015_0.jpg")
    return int(fields[0]), int(fields[2])


def read_msmt_list(list_path: str, image_dir: str, seen: dict[str, str], pid_offset: int = 0,
                   index: FolderIndex | None = None) -> list[Sample]:
    """Samples of one MSMT17 list file, images under `image_dir`; errors name the list file and line.

    Every image must lie inside `image_dir`, carry the list's pid in its name, and be listed once in all the lists
    read with the same `seen` (train with val, query with gallery; `common.list_once`).
    """
    index = index or FolderIndex()
    samples = []
    for lineno, fields in read_list(list_path, min_fields=2):
        where = f"{list_path}:{lineno}"
        if len(fields) != 2:
            raise DatasetError(f"{where}: expected '<image path> <pid>', got {' '.join(fields)!r}")
        relative, pid_text = fields
        try:
            pid = int(pid_text)
            name_pid, camera = name_fields(relative)
        except ValueError as error:
            raise DatasetError(f"{where}: malformed line {' '.join(fields)!r}: {error}") from None
        if pid < 0:
            raise DatasetError(f"{where}: negative pid {pid}")
        if name_pid != pid:
            raise DatasetError(f"{where}: the list gives pid {pid} but the file name {os.path.basename(relative)} "
                               f"pid {name_pid}")
        reid_layout.check_camera(camera, NUM_CAMERAS, where)
        path = inside(image_dir, relative, where)
        if not index.exists(path):
            raise DatasetError(f"{where}: image {path} does not exist")
        list_once(seen, path, where)
        samples.append(Sample(path, pid + pid_offset, camera - 1))
    if not samples:
        raise DatasetError(f"{list_path}: empty list")
    return samples


def load(root: str, split: str | None = None, version: str | None = None, include_val: bool = False,
         check_counts: bool | None = None) -> Record:
    """Read MSMT17 from `root` (the `MSMT17_V1`/`MSMT17_V2` folder, or a folder holding one of them).

    Args:
      root: where the dataset lies.
      split: must be None (one fixed split).
      version: "V1" or "V2"; None picks the release whose image folders are present.
      include_val: train on `list_train.txt` + `list_val.txt` (32,621 images) instead of the train list only.
      check_counts: compare with the official counts; None does so only when the image count equals the official
        one.
    """
    reid_layout.require_single_split(NAME, split)
    dataset_dir = reid_layout.find_dataset_dir(root, _folder_names(version), _is_msmt_dir, "MSMT17")
    train_folder, test_folder = VERSIONS[_version_of(dataset_dir, version)]
    train_dir, test_dir = os.path.join(dataset_dir, train_folder), os.path.join(dataset_dir, test_folder)
    index, train_seen, test_seen = FolderIndex(), {}, {}

    def read(subset: str, image_dir: str, seen: dict[str, str], pid_offset: int = 0) -> list[Sample]:
        return read_msmt_list(os.path.join(dataset_dir, LIST_FILES[subset]), image_dir, seen, pid_offset, index)

    train = read("train", train_dir, train_seen) + (read("val", train_dir, train_seen) if include_val else [])
    query, gallery = read("query", test_dir, test_seen, 1), read("gallery", test_dir, test_seen, 1)
    record = Record(NAME, relabel(train), tuple(query), tuple(gallery), split="train+val" if include_val else "")
    official = dict(OFFICIAL_COUNTS, train=OFFICIAL_TRAIN_WITH_VAL) if include_val else OFFICIAL_COUNTS
    reid_layout.check_official_counts(record, dataset_dir, official, check_counts)
    return record


eval_splits = reid_layout.fixed_split
