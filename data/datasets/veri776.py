"""VeRi-776 (Liu et al., ECCV 2016 / ICME 2016), evaluated as in ACP (Table I) with the same-camera rule.

Layout (ROOT, or `ROOT/VeRi` etc.): `image_train/`, `image_query/`, `image_test/` (the gallery) holding
`VVVV_cCCC_*.jpg` (VVVV the vehicle 0001-0776, CCC the camera 001-020, stored 0-based as camid 0-19). Where the
official file lists `name_train.txt`, `name_query.txt`, `name_test.txt` are present they are the lists, and the
folder must agree with them (no listed file missing, no image left unlisted); otherwise the folder's images are
the list (sorted).

Official numbers, checked when a list holds its official number of vehicles (`check_counts`: see
`data.datasets.splits.check_official`): train 576 vehicles / 37,778 images / 20 cameras, query 200 / 1,678,
gallery 200 / 11,579. (ACP Table I prints 37,746 training images; the dataset's papers and the download have
37,778.) One fixed split (`split=None`), protocol `market1501`.
"""
from __future__ import annotations

import os

from data.datasets.common import inside, list_images, read_list, require_dir
from data.datasets.reid_layout import NamingScheme, find_dataset_dir, fixed_split, require_single_split
from data.datasets.splits import check_official
from data.record import DatasetError, Record, Sample, relabel

NAME = "veri776"
FOLDER_NAMES = ("VeRi", "veri", "VeRi-776", "VeRi776", "veri776")
SUBSETS = (("train", "image_train", "name_train.txt"), ("query", "image_query", "name_query.txt"),
           ("gallery", "image_test", "name_test.txt"))
NAMING = NamingScheme(tail=r"_.*", example="0001_c001_00016450_0.jpg", num_cameras=20, max_pid=776)
OFFICIAL = {"train": {"ids": 576, "images": 37778, "cameras": 20},
            "query": {"ids": 200, "images": 1678},
            "gallery": {"ids": 200, "images": 11579}}

eval_splits = fixed_split


def _listed_names(list_path: str, folder: str) -> list[str]:
    """The file names of a `name_*.txt` list, checked against the images in `folder`."""
    names, seen = [], {}
    for lineno, fields in read_list(list_path):
        name = fields[0]
        if os.path.dirname(inside(folder, name, f"{list_path}:{lineno}")) != os.path.abspath(folder):
            raise DatasetError(f"{list_path}:{lineno}: expected a file name in {folder}, got {name!r}")
        if name in seen:
            raise DatasetError(f"{list_path}:{lineno}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = lineno
        names.append(name)
    present = set(list_images(folder))
    for name in names:
        if name not in present:
            raise DatasetError(f"{list_path}:{seen[name]}: {os.path.join(folder, name)} does not exist")
    unlisted = sorted(present.difference(seen))
    if unlisted:
        raise DatasetError(f"{folder}: {len(unlisted)} images are not in {list_path}, e.g. {unlisted[0]}")
    return names


def read_subset(dataset_dir: str, folder_name: str, list_name: str) -> list[Sample]:
    """Samples of one image folder, in the order of its name list when present, else sorted."""
    folder = require_dir(os.path.join(dataset_dir, folder_name), "VeRi-776 image folder")
    list_path = os.path.join(dataset_dir, list_name)
    names = _listed_names(list_path, folder) if os.path.isfile(list_path) else list_images(folder)
    if not names:
        raise DatasetError(f"{folder}: no images")
    return [Sample(os.path.join(folder, name), *NAMING.parse(os.path.join(folder, name))) for name in names]


def load(root: str, split: str | None = None, check_counts: bool | None = None) -> Record:
    """Read VeRi-776 from `root` (its folder, or a folder holding it as one of `FOLDER_NAMES`)."""
    require_single_split(NAME, split)
    dataset_dir = find_dataset_dir(
        os.path.abspath(root), FOLDER_NAMES,
        lambda path: any(os.path.isdir(os.path.join(path, folder)) for _, folder, _ in SUBSETS), "VeRi-776")
    lists = {}
    for subset, folder_name, list_name in SUBSETS:
        lists[subset] = read_subset(dataset_dir, folder_name, list_name)
        check_official(os.path.join(dataset_dir, folder_name), lists[subset], OFFICIAL[subset], check_counts)
    return Record(name=NAME, train=relabel(lists["train"]), query=lists["query"], gallery=lists["gallery"],
                  protocol="market1501")
