"""VERI-Wild (Lou et al., CVPR 2019), evaluated as in ACP (Table I: small / medium / large test sets) with the
same-camera rule.

Layout (ROOT, or `ROOT/VERI-Wild` etc.): `images/<vid>/<imgid>.jpg` and `train_test_split/` holding
`train_list.txt`,
`test_{3000,5000,10000}.txt` and `test_{3000,5000,10000}_query.txt` (lines `<vid>/<imgid>`) and
`vehicle_info.txt` (lines `<vid>/<imgid>;<camera>;<time>;<model>;<type>;<color>` after a header line; also
accepted beside `images/`). Cameras come from `vehicle_info.txt` and keep its numbering; an image given two
cameras there is an error. Every listed image must exist and be listed once per list; no training image may be
in the query or test list, and every query must be in the test list.

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

import io
import os

from data.datasets.common import FolderIndex, list_once, read_list, require_dir
from data.datasets.reid_layout import find_dataset_dir
from data.datasets.splits import check_official, unknown_split
from data.record import DatasetError, Record, Sample, relabel

NAME = "veriwild"
FOLDER_NAMES = ("VERI-Wild", "VeRI-Wild", "VeRi-Wild", "veri-wild", "veriwild")
PAPER_TEST_SIZES = (3000, 5000, 10000)
OFFICIAL_TRAIN = {"ids": 30671, "images": 277797}
OFFICIAL_GALLERY_IMAGES = {3000: 38861, 5000: 64389, 10000: 128517}


def read_cameras(path: str) -> dict[str, int]:
    """`<vid>/<imgid>` -> camera, from `vehicle_info.txt` (a first line whose camera is not a number is a header).

    An image given two different cameras is an error naming both lines (the evaluation's same-camera rule would
    silently use the last one)."""
    cameras, first_line = {}, {}
    with open(path, "rb") as f:
        raw = f.read()
    # Only the first two fields are read, so an undecodable byte in a model name must not stop the reader; one in
    # the image key or the camera is reported.
    for lineno, line in enumerate(io.StringIO(raw.decode("utf-8", errors="replace"), newline=None), start=1):
        fields = line.strip().split(";")
        if fields == [""]:
            continue
        camera = fields[1].strip() if len(fields) > 1 else ""
        if lineno == 1 and not camera.isdigit():
            continue
        if "\ufffd" in fields[0] + camera:
            raise DatasetError(f"{path}:{lineno}: the image key or camera is not UTF-8 text")
        if "/" not in fields[0] or not camera.isdigit():
            raise DatasetError(f"{path}:{lineno}: expected <vid>/<imgid>;<camera>;..., got {line.strip()!r}")
        key = fields[0].strip()
        if cameras.setdefault(key, int(camera)) != int(camera):
            raise DatasetError(f"{path}:{lineno}: {key} has camera {int(camera)} here but camera {cameras[key]} on "
                               f"line {first_line[key]}")
        first_line.setdefault(key, lineno)
    return cameras


def read_image_list(list_path: str, image_dir: str, index: FolderIndex, cameras: dict[str, int],
                    seen: dict[str, str]) -> list[Sample]:
    """Samples of a `<vid>/<imgid>` list, with their cameras and checked paths, each image listed once in all the
    lists read with the same `seen` (`common.list_once`)."""
    samples = []
    for lineno, fields in read_list(list_path):
        where, key = f"{list_path}:{lineno}", fields[0]
        vid, _, imgid = key.partition("/")
        # a plain <vid>/<imgid> cannot leave images/ (no "..", no absolute path, no deeper folder)
        if not vid.isdigit() or not imgid or "/" in imgid or imgid in (".", ".."):
            raise DatasetError(f"{where}: expected <vid>/<imgid>, got {key!r}")
        if key not in cameras:
            raise DatasetError(f"{where}: {key} has no camera in vehicle_info.txt")
        path = os.path.join(image_dir, vid, imgid + ".jpg")
        if not index.exists(path):
            raise DatasetError(f"{where}: {path} does not exist")
        list_once(seen, path, where)
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
    image_dir = require_dir(os.path.join(root, "images"), "VERI-Wild image folder")
    index = FolderIndex()
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
    train_seen: dict[str, str] = {}
    train = read_image_list(train_path, image_dir, index, cameras, train_seen)
    check_official(train_path, train, OFFICIAL_TRAIN, check_counts)
    # The query and test lists each start from the training images: one of those in either is a DatasetError.
    query_path, query_seen = os.path.join(split_dir, f"test_{size}_query.txt"), dict(train_seen)
    query = read_image_list(query_path, image_dir, index, cameras, query_seen)
    test_path, test_seen = os.path.join(split_dir, f"test_{size}.txt"), dict(train_seen)
    test = read_image_list(test_path, image_dir, index, cameras, test_seen)
    outside = next((s for s in query if s.path not in test_seen), None)
    if outside is not None:
        raise DatasetError(f"{query_seen[outside.path]}: query image {outside.path} is not in {test_path}, which "
                           "lists every test image (the gallery is the test list without the queries)")
    query_paths = {s.path for s in query}
    gallery = [s for s in test if s.path not in query_paths]
    if int(size) in OFFICIAL_GALLERY_IMAGES:
        check_official(query_path, query, {"ids": int(size), "images": int(size)}, check_counts)
        official = {"ids": int(size), "images": OFFICIAL_GALLERY_IMAGES[int(size)]}
        check_official(test_path, gallery, official, check_counts)
    return Record(name=NAME, train=relabel(train), query=query, gallery=gallery, protocol="market1501",
                  split=size)
