"""CUHK03 and CUHK01 readers on tiny copies of the official layouts written into tmp_path."""
import os

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from data import datasets
from data.datasets import cuhk01, cuhk03
from data.record import DatasetError

# persons per camera pair in the tiny .mat (the release has 843, 440, 77, 58, 49)
PERSONS = (3, 3, 2, 1, 1)


def _slots(pair, person):
    """The non-empty slots of a person: view 2 of person 1 of pair 5 is missing, as some persons lack a view."""
    if (pair, person) == (5, 1):
        return [1, 2]
    return [1, 2, 6, 7] if person % 2 else [1, 6, 7, 8]


def _image(pair, person, slot):
    """A 6 x 4 RGB image whose pixels encode where it came from and which axis is which."""
    image = np.zeros((6, 4, 3), np.uint8)
    image[..., 0] = 10 * pair + slot
    image[..., 1] = person
    image[..., 2] = np.arange(6)[:, None] * 10 + np.arange(4)[None, :]
    return image


def write_cuhk03_mat(path, bad_cell=None):
    """A MATLAB v7.3 cuhk-03.mat: HDF5 with a 512-byte user block, cells as object references in '#refs#'."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10 ** 6))

        def put(data, **attrs):
            ds = refs.create_dataset(f"r{next(counter)}", data=data)
            ds.attrs.update(attrs)
            return ds.ref

        empty = dict(MATLAB_class=np.bytes_("double"), MATLAB_empty=np.uint8(1))
        for variant in ("labeled", "detected"):
            pair_refs = []
            for pair, persons in enumerate(PERSONS, start=1):
                cells = np.empty((10, persons), dtype=h5py.ref_dtype)
                for person in range(1, persons + 1):
                    for slot in range(1, 11):
                        if (variant, pair, person, slot) == bad_cell:
                            cells[slot - 1, person - 1] = put(np.zeros((2, 4, 6), np.uint8))
                        elif slot in _slots(pair, person):
                            # MATLAB writes an H x W x 3 array transposed: (3, W, H) in HDF5
                            cells[slot - 1, person - 1] = put(_image(pair, person, slot).T,
                                                              MATLAB_class=np.bytes_("uint8"))
                        else:
                            cells[slot - 1, person - 1] = put(np.zeros(2, np.uint64), **empty)
                pair_refs.append(put(cells, MATLAB_class=np.bytes_("cell")))
            f.create_dataset(variant, data=np.array([pair_refs], dtype=h5py.ref_dtype))
        testsets = [put(np.array([[1, 2], [1 + i % 3, 2 + i % 2]], np.float64).T) for i in range(20)]
        f.create_dataset("testsets", data=np.array([testsets], dtype=h5py.ref_dtype))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .")
    return path


@pytest.fixture
def cuhk03_root(tmp_path):
    write_cuhk03_mat(str(tmp_path / "cuhk03_release" / "cuhk-03.mat"))
    return str(tmp_path)


SMALL = dict(num_test=2, num_train=3, verbose=False)


def _pids(samples):
    return sorted({s.pid for s in samples})


def test_cuhk03_extracts_once_into_an_atomic_cache(cuhk03_root, monkeypatch):
    release = os.path.join(cuhk03_root, "cuhk03_release")
    stale = os.path.join(release, "images_labeled.tmp-999999999")
    os.makedirs(stale)
    open(os.path.join(stale, "1_001_1_01.png"), "wb").close()  # a half-written leftover of a dead process

    record = datasets.load("cuhk03_labeled", cuhk03_root, split="kvmmn/0", **SMALL)

    cache = os.path.join(release, "images_labeled")
    assert sorted(os.listdir(release)) == ["cuhk-03.mat", "images_labeled"]
    expected = sorted(cuhk03.image_name(p, q, s) for p, n in enumerate(PERSONS, 1)
                      for q in range(1, n + 1) for s in _slots(p, q))
    assert sorted(os.listdir(cache)) == expected
    rgb = cv2.imread(os.path.join(cache, "2_003_2_07.png"))[..., ::-1]
    np.testing.assert_array_equal(rgb, _image(2, 3, 7))
    assert record.name == "cuhk03_labeled" and record.protocol == "single_shot" and record.split == "kvmmn/0"

    def no_second_extraction(*args, **kwargs):
        raise AssertionError("the cache must be reused")

    monkeypatch.setattr(cuhk03, "extract_images", no_second_extraction)
    assert datasets.load("cuhk03_labeled", cuhk03_root, split="kvmmn/0", **SMALL) == record


def test_cuhk03_failed_extraction_leaves_no_cache(tmp_path):
    mat = write_cuhk03_mat(str(tmp_path / "cuhk-03.mat"), bad_cell=("detected", 2, 1, 6))
    with pytest.raises(DatasetError, match=r"cuhk-03.mat: detected\{2\}\{1,6\} is not an RGB uint8 image"):
        datasets.load("cuhk03_detected", str(tmp_path), verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["cuhk-03.mat"]
    # the labeled images of the same file are fine and land beside the .mat (torchreid's place when ROOT holds it)
    record = datasets.load("cuhk03_labeled", str(tmp_path), split="classic/0", verbose=False)
    assert os.path.dirname(record.query[0].path) == os.path.join(os.path.dirname(mat), "images_labeled")


def test_cuhk03_identities_are_unique_across_pairs_and_cameras_per_view(cuhk03_root):
    record = cuhk03.load(cuhk03_root, split="classic/4", variant="detected", verbose=False)
    samples = record.query + record.gallery
    names = {os.path.basename(s.path): s for s in samples}
    for name, sample in names.items():
        pair, person, view, _ = map(int, name[:-4].split("_"))
        assert sample.pid == 1000 * pair + person
        assert sample.camid == 2 * (pair - 1) + view - 1
    assert _pids(samples) == [1002, 2002]  # person 2 of pairs 1 and 2 are different people
    assert all(s.camid % 2 == 0 for s in record.query) and all(s.camid % 2 == 1 for s in record.gallery)
    assert record.num_train_pids == sum(PERSONS) - 2


def test_cuhk03_kvmmn_protocol_seeds_and_sizes(cuhk03_root):
    records = [cuhk03.load(cuhk03_root, split=f"kvmmn/{i}", **SMALL) for i in range(10)]
    pool = {1000 * p + q for p in (1, 2, 3) for q in range(1, PERSONS[p - 1] + 1)}
    test_sets = set()
    for record in records:
        test = set(_pids(record.query)) | set(_pids(record.gallery))
        assert len(test) == 2 and test <= pool
        assert record.num_train_pids == 3
        assert sorted({s.pid for s in record.train}) == [0, 1, 2]  # relabelled
        train_paths = {os.path.basename(s.path)[:5] for s in record.train}
        assert not train_paths & {f"{pid // 1000}_{pid % 1000:03d}" for pid in test}
        assert all(int(os.path.basename(s.path)[0]) in (1, 2, 3) for s in record.train)
        test_sets.add(frozenset(test))
    assert len(test_sets) > 1, "different seeds must give different splits"
    assert cuhk03.load(cuhk03_root, split="kvmmn/3", **SMALL) == records[3]
    every_pair = cuhk03.load(cuhk03_root, split="kvmmn/0", camera_pairs=(1, 2, 3, 4, 5), num_test=2,
                             num_train=8, verbose=False)
    assert every_pair.num_train_pids == 8
    assert datasets.eval_splits("cuhk03_labeled") == tuple(f"kvmmn/{i}" for i in range(10))
    assert datasets.eval_splits("cuhk03_labeled", protocol="kvmmn", num_splits=3) == ("kvmmn/0", "kvmmn/1", "kvmmn/2")
    with pytest.raises(DatasetError, match=r"needs 2 \+ 1160 identities, found only 8"):
        cuhk03.load(cuhk03_root, split="kvmmn/0", num_test=2, verbose=False)


def test_cuhk03_classic_splits_come_from_testsets(cuhk03_root):
    assert datasets.eval_splits("cuhk03_labeled", protocol="classic") == tuple(f"classic/{i}" for i in range(20))
    for i in (0, 4, 19):
        record = datasets.load("cuhk03_labeled", cuhk03_root, split=f"classic/{i}", verbose=False)
        test = {1002, 1000 * (1 + i % 3) + 2 + i % 2}
        assert set(_pids(record.query)) | set(_pids(record.gallery)) == test
        assert record.num_train_pids == sum(PERSONS) - len(test)
        assert record.split == f"classic/{i}"
    implied = datasets.load("cuhk03_labeled", cuhk03_root, protocol="classic", verbose=False)
    assert implied.split == "classic/0"
    with pytest.raises(DatasetError, match=r"cuhk-03.mat: testsets\{6\} names persons without images in .*"
                                           r"images_labeled: 3_003"):
        datasets.load("cuhk03_labeled", cuhk03_root, split="classic/5", verbose=False)


def write_new_protocol_config(path, variant_root):
    images = sorted(os.listdir(variant_root))
    persons = sorted({name[:5] for name in images})
    label = {p: i + 1 for i, p in enumerate(persons)}
    train_persons, test_persons = persons[:6], persons[6:]
    index = {name: i + 1 for i, name in enumerate(images)}
    query = [index[n] for n in images if n[:5] in test_persons and n[6] == "1"]
    gallery = [index[n] for n in images if n[:5] in test_persons and n[6] == "2"]
    train = [index[n] for n in images if n[:5] in train_persons]
    filelist = np.empty((len(images), 1), dtype=object)
    filelist[:, 0] = images
    scipy.io.savemat(path, {
        "filelist": filelist, "labels": np.array([[label[n[:5]]] for n in images], np.float64),
        "camId": np.array([[int(n[6])] for n in images], np.float64),
        "train_idx": np.array(train, np.float64)[:, None], "query_idx": np.array(query, np.float64)[:, None],
        "gallery_idx": np.array(gallery, np.float64)[:, None]})
    return len(train), len(query), len(gallery)


def test_cuhk03_new_protocol_reads_the_config(cuhk03_root):
    cuhk03.load(cuhk03_root, variant="detected", **SMALL)  # extracts the detected images
    cache = os.path.join(cuhk03_root, "cuhk03_release", "images_detected")
    config = os.path.join(cuhk03_root, "cuhk03_new_protocol_config_detected.mat")
    sizes = write_new_protocol_config(config, cache)

    record = datasets.load("cuhk03_detected", cuhk03_root, split="new", verbose=False)
    assert (len(record.train), len(record.query), len(record.gallery)) == sizes
    assert record.protocol == "market1501" and record.split == "new"
    assert record.num_train_pids == 6 and sorted({s.pid for s in record.train}) == list(range(6))
    assert _pids(record.query) == [3001, 3002, 4001, 5001] and _pids(record.gallery) == [3001, 3002, 4001]
    assert datasets.eval_splits("cuhk03_detected", protocol="new") == ("new",)

    config_data = scipy.io.loadmat(config)
    config_data["labels"][0, 0] = 99  # a person's images with two labels
    scipy.io.savemat(config, {k: v for k, v in config_data.items() if not k.startswith("__")})
    with pytest.raises(DatasetError, match=r"cuhk03_new_protocol_config_detected.mat: filelist\(2\)"):
        datasets.load("cuhk03_detected", cuhk03_root, split="new", verbose=False)
    config_data["labels"][0, 0] = 1
    config_data["query_idx"][0, 0] = 10 ** 5
    scipy.io.savemat(config, {k: v for k, v in config_data.items() if not k.startswith("__")})
    with pytest.raises(DatasetError, match="query_idx must hold 1-based indices"):
        datasets.load("cuhk03_detected", cuhk03_root, split="new", verbose=False)
    with pytest.raises(DatasetError, match="cuhk03_new_protocol_config_labeled.mat: not found"):
        datasets.load("cuhk03_labeled", cuhk03_root, split="new", verbose=False)


def test_cuhk03_reads_a_torchreid_folder(cuhk03_root, tmp_path):
    cuhk03.load(cuhk03_root, **SMALL)
    torchreid_root = tmp_path / "torchreid"
    os.makedirs(torchreid_root)
    os.rename(os.path.join(cuhk03_root, "cuhk03_release", "images_labeled"), torchreid_root / "images_labeled")
    from_folder = cuhk03.load(str(torchreid_root), split="kvmmn/2", **SMALL)
    assert from_folder.num_train_pids == 3 and len(from_folder.query) > 0
    flat = cuhk03.load(str(torchreid_root / "images_labeled"), split="kvmmn/2", **SMALL)
    assert flat == from_folder  # ROOT may be the image folder itself
    with pytest.raises(DatasetError, match="the classic splits need cuhk-03.mat"):
        cuhk03.load(str(torchreid_root), split="classic/1", verbose=False)
    open(torchreid_root / "images_labeled" / "1_001_2_01.png", "wb").close()  # view 2 with slot 1
    with pytest.raises(DatasetError, match=r"1_001_2_01.png: pair, person, view and slot"):
        cuhk03.load(str(torchreid_root), **SMALL)


def test_cuhk03_bad_input_names_the_file(tmp_path, cuhk03_root):
    with pytest.raises(DatasetError, match=f"missing CUHK03 root folder: {tmp_path / 'nowhere'}"):
        cuhk03.load(str(tmp_path / "nowhere"), verbose=False)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'empty'}: no CUHK03 .*found here nor in any of cuhk03"):
        cuhk03.load(str(tmp_path / "empty"), verbose=False)
    (tmp_path / "v5").mkdir()
    scipy.io.savemat(str(tmp_path / "v5" / "cuhk-03.mat"), {"labeled": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"v5/cuhk-03.mat: not a MATLAB v7.3 \(HDF5\) file"):
        cuhk03.load(str(tmp_path / "v5"), verbose=False)
    (tmp_path / "nokey").mkdir()
    with h5py.File(tmp_path / "nokey" / "cuhk-03.mat", "w") as f:
        f.create_dataset("detected", data=np.zeros(3))
    with pytest.raises(DatasetError, match=r"nokey/cuhk-03.mat: no 'labeled' in the file \(keys: detected\)"):
        cuhk03.load(str(tmp_path / "nokey"), verbose=False)
    with pytest.raises(DatasetError, match=r"nokey/cuhk-03.mat: 'detected' is not an array of object references"):
        cuhk03.load(str(tmp_path / "nokey"), variant="detected", verbose=False)
    assert not [n for n in os.listdir(tmp_path / "nokey") if n != "cuhk-03.mat"]
    for split in ("kvmmn/10", "classic/20", "new/1", "random", "kvmmn/x"):
        with pytest.raises(DatasetError, match=r"unknown split .*valid splits: kvmmn/0..kvmmn/9, classic/0"):
            cuhk03.load(cuhk03_root, split=split, verbose=False)
    with pytest.raises(DatasetError, match="split 'classic/1' belongs to protocol 'classic', not protocol='new'"):
        cuhk03.load(cuhk03_root, split="classic/1", protocol="new", verbose=False)
    with pytest.raises(DatasetError, match="unknown protocol 'old'"):
        datasets.eval_splits("cuhk03_labeled", protocol="old")
    with pytest.raises(DatasetError, match="unknown variant 'raw'"):
        cuhk03.load(cuhk03_root, variant="raw")


def test_cuhk03_checks_the_official_numbers_of_a_full_release(cuhk03_root, monkeypatch):
    assert cuhk03.load(cuhk03_root, **SMALL).num_train_pids == 3  # a tiny copy is not checked
    with pytest.raises(DatasetError, match=r"images_labeled: 10 ids \(official: 1,467\), 38 images \(official: "
                                           r"14,096\), 9 cameras \(official: 10\);.*check_counts=False"):
        cuhk03.load(cuhk03_root, check_counts=True, **SMALL)
    monkeypatch.setitem(cuhk03.OFFICIAL, "labeled", {"ids": sum(PERSONS), "images": 99, "cameras": 9})
    with pytest.raises(DatasetError, match=r"images_labeled: 38 images \(official: 99\); the download looks "):
        cuhk03.load(cuhk03_root, **SMALL)
    assert cuhk03.load(cuhk03_root, check_counts=False, **SMALL).num_train_pids == 3


# ---------------------------------------------------------------------------------------------------- CUHK01

def write_campus(root, identities=6, skip=()):
    campus = os.path.join(root, "campus")
    os.makedirs(campus)
    png = cv2.imencode(".png", np.zeros((4, 2, 3), np.uint8))[1].tobytes()
    for pid in range(1, identities + 1):
        for k in range(1, 5):
            if (pid, k) not in skip:
                with open(os.path.join(campus, f"{pid:04d}{k:03d}.png"), "wb") as f:
                    f.write(png)
    return str(root)


def test_cuhk01_protocols_and_seeds(tmp_path):
    root = write_campus(tmp_path)
    record = datasets.load("cuhk01", root, split="2/0")
    assert record.protocol == "single_shot" and record.split == "2/0"
    test = _pids(record.query)
    assert len(test) == 2 and _pids(record.gallery) == test
    assert len(record.query) == len(record.gallery) == 4
    assert all(s.camid == 0 and s.path[-7:-4] in ("001", "002") for s in record.query)
    assert all(s.camid == 1 and s.path[-7:-4] in ("003", "004") for s in record.gallery)
    assert record.num_train_pids == 4 and len(record.train) == 16
    assert {s.camid for s in record.train} == {0, 1}
    assert datasets.load("cuhk01", root, split="2/0") == record
    tests = {tuple(_pids(cuhk01.load(root, split=f"2/{i}").query)) for i in range(10)}
    assert len(tests) > 1, "different seeds must give different splits"
    assert cuhk01.load(root, test_ids=3).split == "3/0"
    assert datasets.eval_splits("cuhk01", test_ids=486) == tuple(f"486/{i}" for i in range(10))
    assert datasets.eval_splits("cuhk01") == tuple(f"100/{i}" for i in range(10))
    write_campus(tmp_path / "parent" / "CUHK01")  # ROOT may hold the dataset folder under its usual name
    assert len(cuhk01.load(str(tmp_path / "parent"), split="2/0").train) == 16


def test_cuhk01_bad_input(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=f"{tmp_path}: no CUHK01 found here nor in any of cuhk01, CUHK01"):
        cuhk01.load(str(tmp_path))
    root = write_campus(tmp_path / "a")
    for split in ("2/10", "x", "0", "2/y"):
        with pytest.raises(DatasetError, match=r"unknown split .*valid splits: 100/0..100/9, 486/0..486/9"):
            cuhk01.load(root, split=split)
    with pytest.raises(DatasetError, match="the split needs 6 identities, found only 6|leaves no training"):
        cuhk01.load(root, split="6/0")
    with pytest.raises(DatasetError, match="the split needs 100 identities, found only 6"):
        cuhk01.load(root)
    with pytest.raises(DatasetError, match="split '2/1' has 2 test identities but test_ids=100"):
        cuhk01.load(root, split="2/1", test_ids=100)
    one_view = write_campus(tmp_path / "b", skip={(3, 3), (3, 4)})
    with pytest.raises(DatasetError, match=r"campus: identities \[3\] have images from one camera only"):
        cuhk01.load(one_view, split="2/0")
    open(os.path.join(root, "campus", "0001005.png"), "wb").close()
    with pytest.raises(DatasetError, match="0001005.png: expected a CUHK01 name NNNNKKK.png"):
        cuhk01.load(root, split="2/0")
    full = write_campus(tmp_path / "c", skip={(5, 4)})
    monkeypatch.setattr(cuhk01, "OFFICIAL", {"ids": 6, "images": 24, "cameras": 2})
    with pytest.raises(DatasetError, match=r"c/campus: 23 images \(official: 24\)"):
        cuhk01.load(full, split="2/0")
    lenient = cuhk01.load(full, split="2/0", check_counts=False)
    assert len(lenient.train) + len(lenient.query) + len(lenient.gallery) == 23
