"""VERI-Wild (Lou et al., CVPR 2019), evaluated as in ACP (Table I: small / medium / large test sets) with the
same-camera rule.

Layout (ROOT, or `ROOT/VERI-Wild` etc.): `images/<vid>/<imgid>.jpg` and `train_test_split/` holding
`train_list.txt`,
`test_{3000,5000,10000}.txt` and `test_{3000,5000,10000}_query.txt` (lines `<vid>/<imgid>`) and
`vehicle_info.txt` (lines `<vid>/<imgid>;<camera>;<time>;<model>;<type>;<color>` after a header line; also
accepted beside `images/`). Cameras come from `vehicle_info.txt` and keep its numbering. Every listed
image must exist.

Splits `"3000"`, `"5000"`, `"10000"` (and N for any other `test_<N>.txt` present), default `"3000"`;
`eval_splits(test_size=N)` is `("N",)`. The query is `test_N_query.txt`; the gallery is `test_N.txt` without the
query images (the official test list holds all 41,861 / 69,389 / 138,517 test images, of which the 3,000 / 5,000
/ 10,000 queries are not gallery items; ACP Table I: gallery 38,861 / 64,389 / 128,517).

Official numbers, checked when a list holds its official number of vehicles (`check_counts`: see
`data.datasets.splits.check_official`): train 30,671 vehicles / 277,797 images; queries one image per test
vehicle; galleries as above. Camera counts are not
checked (the sources disagree: 173 training cameras in ACP Table I, 174 in the dataset paper).
"""
from __future__ import annotations

import os

from data.datasets.common import read_list, require_dir
from data.datasets.reid_layout import find_dataset_dir
from data.datasets.splits import check_official, unknown_split
from data.record import DatasetError, Record, Sample, relabel

NAME = "veriwild"
FOLDER_NAMES = ("VERI-Wild", "VeRI-Wild", "VeRi-Wild", "veri-wild", "veriwild")
PAPER_TEST_SIZES = (3000, 5000, 10000)
OFFICIAL_TRAIN = {"ids": 30671, "images": 277797}
OFFICIAL_GALLERY_IMAGES = {3000: 38861, 5000: 64389, 10000: 128517}


def read_cameras(path: str) -> dict[str, int]:
    """`<vid>/<imgid>` -> camera, from `vehicle_info.txt` (a first line whose camera is not a number is a header)."""
    cameras = {}
    # only the first two fields are read, so an undecodable byte in a model name must not stop the reader
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.strip().split(";")
            if fields == [""]:
                continue
            camera = fields[1].strip() if len(fields) > 1 else ""
            if lineno == 1 and not camera.isdigit():
                continue
            if "/" not in fields[0] or not camera.isdigit():
                raise DatasetError(f"{path}:{lineno}: expected <vid>/<imgid>;<camera>;..., got {line.strip()!r}")
            cameras[fields[0].strip()] = int(camera)
    return cameras


class _ImageIndex:
    """Which images exist under `ROOT/images`, one folder listing per vehicle, read on first use."""

    def __init__(self, image_dir: str):
        self.image_dir = image_dir
        self._folders: dict[str, set[str]] = {}

    def path(self, vid: str, imgid: str) -> str | None:
        if vid not in self._folders:
            folder = os.path.join(self.image_dir, vid)
            self._folders[vid] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        name = imgid + ".jpg"
        return os.path.join(self.image_dir, vid, name) if name in self._folders[vid] else None


def read_image_list(list_path: str, images: _ImageIndex, cameras: dict[str, int]) -> list[Sample]:
    """Samples of a `<vid>/<imgid>` list, with their cameras and checked paths."""
    samples = []
    for lineno, fields in read_list(list_path):
        key = fields[0]
        vid, _, imgid = key.partition("/")
        if not vid.isdigit() or not imgid:
            raise DatasetError(f"{list_path}:{lineno}: expected <vid>/<imgid>, got {key!r}")
        if key not in cameras:
            raise DatasetError(f"{list_path}:{lineno}: {key} has no camera in vehicle_info.txt")
        path = images.path(vid, imgid)
        if path is None:
            raise DatasetError(f"{list_path}:{lineno}: {os.path.join(images.image_dir, vid, imgid + '.jpg')} "
                               "does not exist")
        samples.append(Sample(path, int(vid), cameras[key]))
    if not samples:
        raise DatasetError(f"{list_path}: empty list")
    return samples


def _is_veriwild_dir(path: str) -> bool:
    return any(os.path.isdir(os.path.join(path, folder)) for folder in ("images", "train_test_split"))


def eval_splits(test_size: int = PAPER_TEST_SIZES[0], **_) -> tuple[str]:
    """The one split of test set `test_size`; the other options of `load` play no part."""
    return (str(test_size),)


def load(root: str, split: str | None = None, test_size: int | None = None,
         check_counts: bool | None = None) -> Record:
    """Read VERI-Wild from `root` (its folder, or one holding it as one of `FOLDER_NAMES`) and return test set
    `split` (see the module docstring)."""
    root = find_dataset_dir(os.path.abspath(root), FOLDER_NAMES, _is_veriwild_dir, "VERI-Wild")
    images = _ImageIndex(require_dir(os.path.join(root, "images"), "VERI-Wild image folder"))
    split_dir = require_dir(os.path.join(root, "train_test_split"), "VERI-Wild split folder")
    sizes = sorted({int(f[5:-4]) for f in os.listdir(split_dir)
                    if f.startswith("test_") and f.endswith(".txt") and f[5:-4].isdigit()}.union(PAPER_TEST_SIZES))
    valid = [str(n) for n in sizes]
    size = str(split) if split is not None else str(test_size or PAPER_TEST_SIZES[0])
    if size not in valid:
        raise unknown_split(NAME, split, valid)
    if test_size is not None and int(size) != test_size:
        raise DatasetError(f"{NAME}: split {split!r} is test set {size} but test_size={test_size}")
    info_paths = [os.path.join(split_dir, "vehicle_info.txt"), os.path.join(root, "vehicle_info.txt")]
    info_path = next((p for p in info_paths if os.path.isfile(p)), None)
    if info_path is None:
        raise DatasetError(f"missing VERI-Wild camera list: neither {info_paths[0]} nor {info_paths[1]} exists")
    cameras = read_cameras(info_path)
    train_path = os.path.join(split_dir, "train_list.txt")
    train = read_image_list(train_path, images, cameras)
    check_official(train_path, train, OFFICIAL_TRAIN, check_counts)
    query_path = os.path.join(split_dir, f"test_{size}_query.txt")
    query = read_image_list(query_path, images, cameras)
    test_path = os.path.join(split_dir, f"test_{size}.txt")
    query_paths = {s.path for s in query}
    gallery = [s for s in read_image_list(test_path, images, cameras) if s.path not in query_paths]
    if int(size) in OFFICIAL_GALLERY_IMAGES:
        check_official(query_path, query, {"ids": int(size), "images": int(size)}, check_counts)
        official = {"ids": int(size), "images": OFFICIAL_GALLERY_IMAGES[int(size)]}
        check_official(test_path, gallery, official, check_counts)
    return Record(name=NAME, train=relabel(train), query=query, gallery=gallery, protocol="market1501",
                  split=size)
