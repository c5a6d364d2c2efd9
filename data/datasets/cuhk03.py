"""CUHK03 (Li et al., CVPR 2014), labeled and detected, with three protocols: KVM-MN's (Table 2), the 20 classic
splits of the release, and the 767/700 "new protocol" (Zhong et al., CVPR 2017).

Layout (in ROOT or `ROOT/cuhk03`, any one of):
  * the official release `cuhk03_release/cuhk-03.mat` (or `cuhk-03.mat`), MATLAB v7.3 = HDF5:
    `labeled` and `detected` are cells of 5 camera pairs, each a (persons x 10) cell of images stored as HDF5
    object references ((10, persons) in HDF5 order), slots 1-5 from the pair's first camera and 6-10 from its
    second, empty slots skipped; `testsets` holds the 20 classic test sets of 100 [pair, person] rows. The images
    are extracted once into `images_<variant>/` beside the .mat: written into `images_<variant>.tmp-<pid>`
    and renamed when complete, so a half-written cache is never used (a leftover of a dead process is removed).
  * an extracted folder in torchreid's naming `{pair}_{person:03d}_{view}_{slot:02d}.png`, as
    `images_<variant>/` or the folder itself (the classic protocol still needs the .mat for `testsets`).
  * for the new protocol, also `cuhk03_new_protocol_config_<variant>.mat` in the folder or beside `cuhk-03.mat`
    (keys `filelist`, `labels`, `train_idx`, `query_idx`, `gallery_idx`, indices 1-based; its `camId` is not
    needed, the cameras come from the file names). Its file names are looked up in the image folder (none can
    point elsewhere), and an image may appear once in the three index lists together.

Identities are unique across camera pairs: pid = 1000 * pair + person (1-based, e.g. 2017); the camera is the
pair's view, camid = 2 * (pair - 1) + view - 1 (0-9), so the same-camera rule compares the right cameras.

Splits and protocols (`protocol` option, or implied by the split name):
  * `"kvmmn/<i>"` (protocol "kvmmn", the default): KVM-MN Table 2, 1,360 identities = camera pairs 1-3
    (843 + 440 + 77 persons, the dataset paper's 1,360; option `camera_pairs`), shuffled with seed i:
    `num_test`=100 test, then `num_train`=1,160 training identities, the rest (100) held out for validation
    and not in the record. `eval_splits` gives `kvmmn/0` .. `kvmmn/<num_splits - 1>` (10, as the paper's "10
    random splits").
  * `"classic/<i>"`, i = 0..19: test identities from `testsets{i+1}`, all other identities train (torchreid's
    reading).
  * `"new"`: train / query / gallery from the config file, protocol `market1501`.
  Single shot (kvmmn, classic): the query holds the test identities' images from the pair's first camera, the
  gallery those from the second (Li et al.'s camera A -> camera B), and the `single_shot` protocol of
  `data.evaluation` draws one gallery image per identity per trial. Our choice where the paper is silent; with
  query and gallery from different cameras the evaluation needs no same-camera rule.

Official numbers, checked when all 1,467 identities are present (`check_counts`: see
`data.datasets.splits.check_official`): labeled 14,096 and detected 14,097 images from 10 cameras; new
protocol train 767 identities / 7,368 (labeled) or 7,365 (detected) images, query 700 / 1,400, gallery
700 / 5,328 or 5,332.
"""
from __future__ import annotations

import os
import re
import shutil

import numpy as np

from data.datasets.common import list_images, list_once, require_dir
from data.datasets.reid_layout import find_dataset_dir
from data.datasets.splits import check_official, identity_partition, split_parts, unknown_split
from data.record import DatasetError, Record, Sample, relabel
from engine import atomic
from engine.progress import Progress

VARIANTS = ("labeled", "detected")
FOLDER_NAMES = ("cuhk03", "CUHK03")
PROTOCOLS = ("kvmmn", "classic", "new")
KVMMN_CAMERA_PAIRS = (1, 2, 3)
NUM_CLASSIC_SPLITS = 20
SLOTS_PER_PERSON = 10
OFFICIAL = {"labeled": {"ids": 1467, "images": 14096, "cameras": 10},
            "detected": {"ids": 1467, "images": 14097, "cameras": 10}}
OFFICIAL_NEW = {"labeled": {"train": {"ids": 767, "images": 7368}, "query": {"ids": 700, "images": 1400},
                            "gallery": {"ids": 700, "images": 5328}},
                "detected": {"train": {"ids": 767, "images": 7365}, "query": {"ids": 700, "images": 1400},
                             "gallery": {"ids": 700, "images": 5332}}}
_FILE = re.compile(r"^(\d)_(\d{3})_([12])_(\d{2})\.png$")


def person_id(pair: int, person: int) -> int:
    """The dataset-wide identity of `person` (1-based) in camera pair `pair` (1-based)."""
    return 1000 * pair + person


def camera_id(pair: int, view: int) -> int:
    """The camera of view 1 or 2 of camera pair `pair` (both 1-based), 0-based over the 10 cameras."""
    return 2 * (pair - 1) + view - 1


def image_name(pair: int, person: int, slot: int) -> str:
    """torchreid's file name of slot 1-10 (1-5: view 1, 6-10: view 2) of a person."""
    return f"{pair}_{person:03d}_{1 if slot <= 5 else 2}_{slot:02d}.png"


def find_mat(root: str) -> str | None:
    """`cuhk-03.mat` under `root` (in `cuhk03_release/` or directly), or None."""
    for path in (os.path.join(root, "cuhk03_release", "cuhk-03.mat"), os.path.join(root, "cuhk-03.mat")):
        if os.path.isfile(path):
            return path
    return None


def _open_mat(path: str):
    import h5py  # only CUHK03 needs h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a MATLAB v7.3 (HDF5) file: {err}") from err


def _references(ds, path: str, what: str):
    """The object references held by HDF5 dataset `ds` (`what` in file `path`), as an array."""
    import h5py

    if not isinstance(ds, h5py.Dataset) or h5py.check_dtype(ref=ds.dtype) is not h5py.Reference:
        raise DatasetError(f"{path}: {what} is not an array of object references (a MATLAB cell)")
    return ds[()]


def _cell(mat, key: str, path: str):
    if key not in mat:
        raise DatasetError(f"{path}: no {key!r} in the file (keys: {', '.join(sorted(mat.keys()))})")
    return _references(mat[key], path, repr(key)).ravel()


def _decode_image(ds, path: str, where: str):
    """The (H, W, 3) uint8 RGB image of a cell, or None for an empty cell."""
    data = ds[()]
    if ds.attrs.get("MATLAB_empty", 0) or data.size == 0 or (data.ndim == 1 and not data.any()):
        return None
    if data.ndim != 3 or data.shape[0] != 3 or data.dtype != np.uint8:
        raise DatasetError(f"{path}: {where} is not an RGB uint8 image (shape {data.shape}, {data.dtype})")
    return np.ascontiguousarray(data.T)


def extract_images(mat_path: str, variant: str, target: str, verbose: bool = True) -> str:
    """Write every image of `variant` in `mat_path` as `target/<torchreid name>.png`, atomically (module doc)."""
    atomic.remove_dead_temporaries(target)  # what a killed extraction left, half-written
    partial = atomic.temporary_path(target)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        os.makedirs(partial)
    except OSError as err:
        raise DatasetError(f"cannot write the CUHK03 image cache {target} beside {mat_path}: {err}") from err
    try:
        with _open_mat(mat_path) as mat:
            pairs = [_references(mat[ref], mat_path, f"{variant}{{{p}}}")
                     for p, ref in enumerate(_cell(mat, variant, mat_path), start=1)]
            for p, cells in enumerate(pairs, start=1):
                if cells.ndim != 2 or cells.shape[0] != SLOTS_PER_PERSON:
                    raise DatasetError(f"{mat_path}: {variant}{{{p}}} has shape {cells.shape}, expected "
                                       f"({SLOTS_PER_PERSON}, persons) in HDF5 order")
            progress = _progress(sum(c.shape[1] for c in pairs), f"Extracting CUHK03 {variant}", verbose)
            for p, cells in enumerate(pairs, start=1):
                for person in range(1, cells.shape[1] + 1):
                    for slot in range(1, SLOTS_PER_PERSON + 1):
                        where = f"{variant}{{{p}}}{{{person},{slot}}}"
                        image = _decode_image(mat[cells[slot - 1, person - 1]], mat_path, where)
                        if image is not None:
                            _write_png(os.path.join(partial, image_name(p, person, slot)), image)
                    progress.add(1)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        os.rename(partial, target)
    except OSError:
        if not os.path.isdir(target):
            raise
        shutil.rmtree(partial, ignore_errors=True)  # another process finished the same extraction first
    return target


def _write_png(path: str, image: np.ndarray) -> None:
    """Write RGB `image` as a PNG. Encoded in memory and written by Python: OpenCV's imwrite crashes the process
    (segmentation fault) on a path that is not UTF-8, such as a non-UTF-8 dataset folder."""
    import cv2

    ok, encoded = cv2.imencode(".png", image[..., ::-1])
    if not ok:
        raise DatasetError(f"could not encode {path}")
    encoded.tofile(path)


def _progress(total: int, title: str, verbose: bool):
    if verbose:
        print(title)
    return Progress(total, unit="person", enabled=bool(verbose))


def dataset_dir(root: str, variant: str) -> str:
    """`root` or `root/cuhk03`, whichever holds the release .mat, `images_<variant>/` or torchreid-named images."""
    require_dir(root, "CUHK03 root folder")

    def holds_cuhk03(path: str) -> bool:
        return (find_mat(path) is not None or os.path.isdir(os.path.join(path, f"images_{variant}"))
                or any(_FILE.match(name) for name in os.listdir(path)))

    return find_dataset_dir(root, FOLDER_NAMES, holds_cuhk03,
                            f"CUHK03 (cuhk03_release/cuhk-03.mat, cuhk-03.mat, images_{variant}/ or images named "
                            "like 1_001_1_01.png)")


def image_folder(root: str, variant: str, verbose: bool = True) -> str:
    """The folder of extracted `variant` images in dataset folder `root`, extracting them from the .mat if needed."""
    candidates = [os.path.join(root, f"images_{variant}")]
    mat_path = find_mat(root)
    if mat_path is not None:
        candidates.append(os.path.join(os.path.dirname(mat_path), f"images_{variant}"))
    for folder in candidates:
        if os.path.isdir(folder):
            return folder
    if mat_path is None:
        return root
    return extract_images(mat_path, variant, candidates[-1], verbose)


def read_images(folder: str) -> tuple[Sample, ...]:
    """Every image in `folder` named `{pair}_{person:03d}_{view}_{slot:02d}.png`, as Samples (module doc)."""
    samples = []
    for name in list_images(folder):
        match = _FILE.match(name)
        if not match:
            if name.lower().endswith(".png"):
                raise DatasetError(f"{os.path.join(folder, name)}: expected a CUHK03 name like 1_001_1_01.png")
            continue
        pair, person, view, slot = map(int, match.groups())
        if pair < 1 or person < 1 or view != (1 if slot <= 5 else 2) or not 1 <= slot <= SLOTS_PER_PERSON:
            raise DatasetError(f"{os.path.join(folder, name)}: pair, person, view and slot (1-5 view 1, 6-10 "
                               "view 2) do not agree")
        samples.append(Sample(os.path.join(folder, name), person_id(pair, person), camera_id(pair, view)))
    if not samples:
        raise DatasetError(f"{folder}: no CUHK03 images (named like 1_001_1_01.png)")
    return tuple(samples)


def read_testsets(mat_path: str) -> list[set[int]]:
    """The classic test sets of `mat_path` as sets of pids."""
    testsets = []
    with _open_mat(mat_path) as mat:
        for i, ref in enumerate(_cell(mat, "testsets", mat_path), start=1):
            rows = np.asarray(mat[ref][()]).T
            if rows.ndim != 2 or rows.shape[1] != 2 or not _positive_integers(rows):
                raise DatasetError(f"{mat_path}: testsets{{{i}}} has shape {rows.shape}; expected rows of "
                                   "positive integers [camera pair, person]")
            testsets.append({person_id(int(pair), int(person)) for pair, person in rows})
    return testsets


def _positive_integers(values: np.ndarray) -> bool:
    return values.size > 0 and values.dtype.kind in "iuf" and bool(np.all(values == np.round(values))) \
        and values.min() >= 1


def eval_splits(variant: str = "labeled", protocol: str = "kvmmn", num_splits: int = 10, **_) -> tuple[str, ...]:
    """The splits of `protocol` whose results are averaged; the other options of `load` play no part."""
    if protocol == "kvmmn":
        return tuple(f"kvmmn/{i}" for i in range(num_splits))
    if protocol == "classic":
        return tuple(f"classic/{i}" for i in range(NUM_CLASSIC_SPLITS))
    if protocol == "new":
        return ("new",)
    raise DatasetError(f"cuhk03_{variant}: unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def load(root: str, split: str | None = None, variant: str = "labeled", protocol: str | None = None,
         num_splits: int = 10, num_train: int = 1160, num_test: int = 100,
         camera_pairs: tuple[int, ...] = KVMMN_CAMERA_PAIRS, check_counts: bool | None = None,
         verbose: bool = True) -> Record:
    """Read CUHK03 `variant` under `root` and return split `split` (see the module docstring)."""
    name = f"cuhk03_{variant}"
    if variant not in VARIANTS:
        raise DatasetError(f"CUHK03: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    subset, index = _parse_split(name, split, protocol, num_splits)
    root = dataset_dir(os.path.abspath(root), variant)
    folder = image_folder(root, variant, verbose)
    samples = read_images(folder)
    check_official(folder, samples, OFFICIAL[variant], check_counts)
    if subset == "new":
        return _new_protocol(root, name, variant, folder, samples, check_counts)
    if subset == "kvmmn":
        pool = {s.pid for s in samples if s.pid // 1000 in camera_pairs}
        where = f"{folder} (camera pairs {', '.join(map(str, camera_pairs))})"
        test, train, _ = map(set, identity_partition(pool, [num_test, num_train], index, where))
    else:
        test = _classic_test_set(root, name, split, index, folder, samples)
        train = {s.pid for s in samples}.difference(test)
    return Record(
        name=name,
        train=relabel([s for s in samples if s.pid in train]),
        query=[s for s in samples if s.pid in test and s.camid % 2 == 0],
        gallery=[s for s in samples if s.pid in test and s.camid % 2 == 1],
        protocol="single_shot",
        split=f"{subset}/{index}",
    )


def _parse_split(name: str, split: str | None, protocol: str | None, num_splits: int) -> tuple[str, int]:
    """(protocol, split index) of a split name, or of the first split of `protocol` when `split` is None."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise DatasetError(f"{name}: unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    valid = [f"kvmmn/0..kvmmn/{num_splits - 1}", f"classic/0..classic/{NUM_CLASSIC_SPLITS - 1}", "new"]
    subset, index = split_parts(name, split if split is not None else protocol or "kvmmn", valid)
    limit = {"kvmmn": num_splits, "classic": NUM_CLASSIC_SPLITS, "new": 1}.get(subset, 0)
    if index >= limit or (subset == "new" and split not in (None, "new")):
        raise unknown_split(name, split, valid)
    if protocol is not None and protocol != subset:
        raise DatasetError(f"{name}: split {split!r} belongs to protocol {subset!r}, not protocol={protocol!r}")
    return subset, index


def _classic_test_set(root: str, name: str, split: str | None, index: int, folder: str,
                      samples: tuple[Sample, ...]) -> set[int]:
    """The pids of classic test set `index` (0-based) of the release's `testsets`, all of them with images."""
    mat_path = find_mat(root)
    if mat_path is None:
        raise DatasetError(f"{name}: the classic splits need cuhk-03.mat under {root} (its 'testsets')")
    testsets = read_testsets(mat_path)
    if index >= len(testsets):
        raise unknown_split(name, split, [f"classic/0..classic/{len(testsets) - 1} ({mat_path})"])
    missing = sorted(testsets[index].difference(s.pid for s in samples))
    if missing:
        raise DatasetError(f"{mat_path}: testsets{{{index + 1}}} names persons without images in {folder}: "
                           f"{', '.join(f'{pid // 1000}_{pid % 1000:03d}' for pid in missing[:10])}")
    return testsets[index]


def _config_path(root: str, variant: str) -> str:
    base = f"cuhk03_new_protocol_config_{variant}.mat"
    mat_path = find_mat(root)
    candidates = [os.path.join(root, base)] + ([os.path.join(os.path.dirname(mat_path), base)] if mat_path else [])
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError(f"the new protocol needs {base}: not found at {' or '.join(candidates)}")


def _new_protocol(root: str, name: str, variant: str, folder: str, samples: tuple[Sample, ...],
                  check_counts: bool | None) -> Record:
    """Train / query / gallery of the 767/700 protocol, from the config file's 1-based indices into its filelist."""
    import scipy.io

    path = _config_path(root, variant)
    try:
        config = scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as err:
        raise DatasetError(f"{path}: cannot read the config (.mat v5 expected): {err}") from err
    missing = [k for k in ("filelist", "labels", "train_idx", "query_idx", "gallery_idx") if k not in config]
    if missing:
        raise DatasetError(f"{path}: missing {', '.join(missing)}")
    files = [str(np.asarray(cell).ravel()[0]) if np.size(cell) else "" for cell in config["filelist"].ravel()]
    labels = np.asarray(config["labels"]).ravel()
    if len(labels) != len(files):
        raise DatasetError(f"{path}: {len(files)} files in filelist but {len(labels)} labels")
    by_name = {os.path.basename(s.path): s for s in samples}
    label_of: dict[int, int] = {}
    for position, file_name in enumerate(files, start=1):
        if file_name not in by_name:
            raise DatasetError(f"{path}: filelist({position}) = {file_name!r} is not an image in {folder}")
        pid = by_name[file_name].pid
        if label_of.setdefault(pid, int(labels[position - 1])) != int(labels[position - 1]):
            raise DatasetError(f"{path}: filelist({position}) = {file_name!r} has label {int(labels[position - 1])}"
                               f" but other images of the same person have label {label_of[pid]}")
    if len(set(label_of.values())) != len(label_of):
        raise DatasetError(f"{path}: one label is given to images of different persons")
    lists, seen = {}, {}
    for subset in ("train", "query", "gallery"):
        indices = np.asarray(config[f"{subset}_idx"]).ravel()
        if not _positive_integers(indices) or indices.max() > len(files):
            raise DatasetError(f"{path}: {subset}_idx must hold 1-based indices into filelist (1..{len(files)})")
        lists[subset] = [by_name[files[int(i) - 1]] for i in indices]
        # one image twice in a list, or in two of them (a test image trained on, a query that is its own match)
        for position, sample in enumerate(lists[subset], start=1):
            list_once(seen, sample.path, f"{path}: {subset}_idx({position})")
        check_official(f"{path} ({subset}_idx)", lists[subset], OFFICIAL_NEW[variant][subset], check_counts)
    return Record(name=name, train=relabel(lists["train"]), query=lists["query"], gallery=lists["gallery"],
                  protocol="market1501", split="new")
