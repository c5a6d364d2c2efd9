"""PKU VehicleID (Liu et al., CVPR 2016) with its test protocol as used by ACP (Table I, Sec. IV: CMC@1 and CMC@5,
"we test 10 times and record the average score").

Layout (ROOT, or `ROOT/VehicleID_V1.0` etc.): `image/<name>.jpg` and `train_test_split/` holding `train_list.txt` and
`test_list_{800,1600,2400}.txt` (the small / medium / large test sets; other `test_list_<N>.txt` of the download
work too), lines `<image name> <vehicle id>`. Every listed image must exist in `image/`, and appear once in the
train list and the test list together (an image twice in a test list could be drawn as its own gallery match).

Splits `"<N>/<t>"`: trial t < `trials` of test list N. Per trial, one randomly drawn image of every test vehicle
is the gallery and all its other images are queries (the dataset paper's protocol; ACP Table I prints the two
counts the other way round), drawn with `numpy.random.default_rng([seed, t])`. A bare `"<N>"` is `"<N>/0"`.
`eval_splits(test_size=N, trials=10, seed=0)` gives `"<N>/0"` .. `"<N>/9"`, whose CMC the paper averages.
VehicleID has no camera labels: train and gallery images get camid 0, queries camid 1, so that the camera rule
of other protocols removes nothing; the record's protocol is `vehicleid` (no camera rule, mAP not reported).

Official numbers, checked when a list holds its official number of vehicles (`check_counts`: see
`data.datasets.splits.check_official`): train 13,164 vehicles / 113,346 images; test lists 800 / 6,493,
1,600 / 13,377, 2,400 / 19,777 (the gallery holds one image per vehicle, the rest are the 5,693, 11,777 and
17,377 queries).
"""
from __future__ import annotations

import os
import re

import numpy as np

from data.datasets.common import inside, list_once, read_list, require_dir
from data.datasets.reid_layout import find_dataset_dir
from data.datasets.splits import check_official, split_parts, unknown_split
from data.record import DatasetError, Record, Sample, relabel

NAME = "vehicleid"
FOLDER_NAMES = ("VehicleID_V1.0", "VehicleID", "vehicleid", "PKU-VehicleID")
PAPER_TEST_SIZES = (800, 1600, 2400)
OFFICIAL_TRAIN = {"ids": 13164, "images": 113346}
OFFICIAL_TEST_IMAGES = {800: 6493, 1600: 13377, 2400: 19777}
_TEST_LIST = re.compile(r"^test_list_(\d+)\.txt$")


def read_vehicle_list(list_path: str, image_dir: str, present: set[str], seen: dict[str, str],
                      camid: int = 0) -> list[Sample]:
    """Samples of a `<image name> <vehicle id>` list, each image checked against the names in `present` and listed
    once in all the lists read with the same `seen` (`common.list_once`: the train and test lists are disjoint)."""
    samples = []
    for lineno, fields in read_list(list_path, min_fields=2):
        where = f"{list_path}:{lineno}"
        name, vid = fields[0], fields[1]
        if not vid.isdigit():
            raise DatasetError(f"{where}: vehicle id {vid!r} is not a non-negative integer")
        path = inside(image_dir, name + ".jpg", where)
        folder, file_name = os.path.split(path)
        if folder != os.path.abspath(image_dir) or file_name not in present:  # the images lie flat in image/
            raise DatasetError(f"{where}: {path} does not exist")
        list_once(seen, path, where)
        samples.append(Sample(path, int(vid), camid))
    if not samples:
        raise DatasetError(f"{list_path}: empty list")
    return samples


def gallery_draw(samples: list[Sample], seed: int, trial: int) -> tuple[list[Sample], list[Sample]]:
    """(query, gallery) of one trial: one image per vehicle drawn into the gallery (camid 0), the rest queries
    (camid 1). Vehicles are visited in sorted order so the draw depends only on (seed, trial) and the list."""
    rng = np.random.default_rng([seed, trial])
    by_vehicle: dict[int, list[Sample]] = {}
    for s in samples:
        by_vehicle.setdefault(s.pid, []).append(s)
    query, gallery = [], []
    for vid in sorted(by_vehicle):
        images = by_vehicle[vid]
        chosen = int(rng.integers(len(images)))
        gallery.append(images[chosen]._replace(camid=0))
        query.extend(s._replace(camid=1) for i, s in enumerate(images) if i != chosen)
    return query, gallery


def _is_vehicleid_dir(path: str) -> bool:
    return any(os.path.isdir(os.path.join(path, folder)) for folder in ("image", "train_test_split"))


def _test_sizes(split_dir: str) -> list[int]:
    found = {int(m.group(1)) for m in map(_TEST_LIST.match, os.listdir(split_dir)) if m}
    return sorted(found.union(PAPER_TEST_SIZES))


def eval_splits(test_size: int = PAPER_TEST_SIZES[0], trials: int = 10, **_) -> tuple[str, ...]:
    """The `trials` random gallery draws of test list `test_size`; the other options of `load` play no part."""
    return tuple(f"{test_size}/{t}" for t in range(trials))


def load(root: str, split: str | None = None, test_size: int | None = None, trials: int = 10, seed: int = 0,
         check_counts: bool | None = None) -> Record:
    """Read VehicleID from `root` (its folder, or one holding it as one of `FOLDER_NAMES`) and return trial `split`
    (see the module docstring)."""
    root = find_dataset_dir(os.path.abspath(root), FOLDER_NAMES, _is_vehicleid_dir, "VehicleID")
    image_dir = require_dir(os.path.join(root, "image"), "VehicleID image folder")
    split_dir = require_dir(os.path.join(root, "train_test_split"), "VehicleID split folder")
    sizes = _test_sizes(split_dir)
    valid = [f"{n}/0..{n}/{trials - 1}" for n in sizes]
    size, trial = split_parts(NAME, split if split is not None else str(test_size or PAPER_TEST_SIZES[0]), valid)
    if not size.isdigit() or int(size) not in sizes or trial >= trials:
        raise unknown_split(NAME, split, valid)
    if test_size is not None and int(size) != test_size:
        raise DatasetError(f"{NAME}: split {split!r} is of test list {size} but test_size={test_size}")
    present, seen = set(os.listdir(image_dir)), {}
    train_path = os.path.join(split_dir, "train_list.txt")
    train = read_vehicle_list(train_path, image_dir, present, seen)
    check_official(train_path, train, OFFICIAL_TRAIN, check_counts)
    test_path = os.path.join(split_dir, f"test_list_{size}.txt")
    test = read_vehicle_list(test_path, image_dir, present, seen)
    if int(size) in OFFICIAL_TEST_IMAGES:
        official = {"ids": int(size), "images": OFFICIAL_TEST_IMAGES[int(size)]}
        check_official(test_path, test, official, check_counts)
    query, gallery = gallery_draw(test, seed, trial)
    return Record(name=NAME, train=relabel(train), query=query, gallery=gallery, protocol="vehicleid",
                  split=f"{size}/{trial}")
