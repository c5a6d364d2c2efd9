"""Your own data as list files (`--dataset=csv`): a folder holding `train.csv`, `query.csv` and `gallery.csv`, any
of which may be absent (at least one must be there).

Each file starts with the header `path,pid,camid` (columns in that order) and has one image per line:

    path,pid,camid
    crops/0001_01.jpg,1,0
    /data/cam7/0001_03.jpg,1,7

- `path`: relative to the folder holding the file, or absolute; the image must exist. Unlike the official datasets'
  readers, which refuse list paths that leave their image folder, this reader lets a path point anywhere (`..`,
  another disk): your images need not sit under the list's folder. The choice is deliberate, not silent: every
  path is normalised, must exist, and may appear once in all three files.
- `pid`, `camid`: non-negative integers, any number of identities and cameras. pid 0 is an identity like any other
  (no distractor convention, unlike Market-1501's layout); there are no junk labels.
- Search mode: in `query.csv` and `gallery.csv` both may be empty (`path,,`), or the header may be `path` alone
  (one path per line): the images have no labels, and the tools that need labels (evaluation) say so. A file is
  labelled throughout or unlabelled throughout; `train.csv` is always labelled.

Errors name the file and line: a missing image, a path listed twice in one file or in two (a training image among
the queries or the gallery is a test image trained on; a query in the gallery is its own match), a non-integer or
negative label, a camid without a pid (or a pid without a camid), a row with other than three fields, bytes that
are not UTF-8 (`common.read_text`; a UTF-8 byte-order mark is accepted).
Train pids are relabelled 0..P-1 as every reader does; query and gallery keep the file's pids.

Options: `protocol` (default "market1501", any of `data.evaluation.PROTOCOLS`).
"""
from __future__ import annotations

import csv
import os

from data.datasets.common import fixed_split, read_text, require_dir
from data.record import DatasetError, Record, Sample, relabel

NAME = "csv"
SUBSETS = ("train", "query", "gallery")
HEADER = ["path", "pid", "camid"]
PATH_ONLY = ["path"]  # a list of images without labels (search mode)
PROTOCOLS = ("market1501", "single_shot", "vehicleid")  # data.evaluation.PROTOCOLS, without importing evaluation


def _label(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DatasetError(f"{where}: {what} {text!r} is not an integer") from None
    if value < 0:
        raise DatasetError(f"{where}: {what} {value} is negative; labels are integers >= 0")
    return value


def _rows(path: str) -> tuple[list[str], list]:
    """(header, [(line number, fields)] of the data rows) of `path`, after checking its header (`HEADER`, or
    `PATH_ONLY` for a list without labels); errors name file and line."""
    lines = read_text(path, "csv list file").splitlines()
    rows = [(number, fields) for number, fields in enumerate(csv.reader(lines), start=1) if fields]
    header = [f.strip() for f in rows[0][1]] if rows else []
    if header not in (HEADER, PATH_ONLY):
        found = ",".join(rows[0][1]) if rows else "an empty file"
        raise DatasetError(f"{path}:1: expected the header {','.join(HEADER)} (or {','.join(PATH_ONLY)} alone), "
                           f"found {found!r}")
    return header, rows[1:]


def read_list(path: str, subset: str, other_lists: dict[str, str] | None = None) -> tuple[Sample, ...]:
    """The samples of one list file (`subset` decides whether labels may be empty); see the module docstring.

    `other_lists`: image path -> "file:line" of the lists read before; an image of this file among them is an error,
    and this file's images are added to it.
    """
    other_lists = {} if other_lists is None else other_lists
    folder = os.path.dirname(os.path.abspath(path))
    samples, first_line, labelled, first_row = [], {}, None, None
    header, rows = _rows(path)
    for number, fields in rows:
        where = f"{path}:{number}"
        if len(fields) != len(header):
            raise DatasetError(f"{where}: expected {len(header)} field{'s' if len(header) > 1 else ''} "
                               f"({','.join(header)}), got {len(fields)}")
        image, pid_text, camid_text = (f.strip() for f in fields + ["", ""][:3 - len(fields)])
        if not image:
            raise DatasetError(f"{where}: empty path")
        if not pid_text and camid_text:
            raise DatasetError(f"{where}: camid {camid_text} without a pid")
        if pid_text and not camid_text:
            raise DatasetError(f"{where}: pid {pid_text} without a camid")
        row_labelled = bool(pid_text)
        if subset == "train" and not row_labelled:
            raise DatasetError(f"{where}: training images need a pid and a camid")
        if labelled is None:
            labelled, first_row = row_labelled, number
        elif labelled != row_labelled:
            has = ("labels", "no labels") if row_labelled else ("no labels", "labels")
            raise DatasetError(f"{where}: has {has[0]} but line {first_row} has {has[1]}; a file is labelled "
                               "throughout or not at all")
        full = os.path.normpath(image if os.path.isabs(image) else os.path.join(folder, image))
        if full in first_line:
            raise DatasetError(f"{where}: {image} is listed twice (first on line {first_line[full]})")
        if full in other_lists:
            raise DatasetError(f"{where}: {image} is already listed at {other_lists[full]}; an image belongs to one "
                               "of train, query and gallery")
        if not os.path.isfile(full):
            raise DatasetError(f"{where}: image not found: {full}")
        first_line[full] = number
        if row_labelled:
            samples.append(Sample(full, _label(pid_text, "pid", where), _label(camid_text, "camid", where)))
        else:
            samples.append(Sample(full, None, None))
    other_lists.update((full, f"{path}:{number}") for full, number in first_line.items())
    return tuple(samples)


def load(root: str, split: str | None = None, protocol: str = "market1501") -> Record:
    """The record of the list files in `root` (see the module docstring)."""
    if split not in (None, ""):
        raise DatasetError(f"dataset csv has one split; got split {split!r}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"dataset csv: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    require_dir(root, "csv dataset folder")
    files = {subset: os.path.join(root, f"{subset}.csv") for subset in SUBSETS}
    present = {subset: path for subset, path in files.items() if os.path.isfile(path)}
    if not present:
        raise DatasetError(f"{root}: holds none of {', '.join(os.path.basename(p) for p in files.values())}")
    listed: dict[str, str] = {}
    lists = {subset: read_list(path, subset, listed) if subset in present else () for subset, path in files.items()}
    return Record(NAME, relabel(lists["train"]), lists["query"], lists["gallery"], protocol=protocol,
                  split=os.path.abspath(root))


eval_splits = fixed_split
