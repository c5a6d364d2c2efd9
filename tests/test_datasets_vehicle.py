"""VeRi-776, VehicleID and VERI-Wild readers on tiny copies of the official layouts written into tmp_path."""
import os

import cv2
import numpy as np
import pytest

from data import datasets
from data.datasets import vehicleid, veri776, veriwild
from data.record import DatasetError

JPEG = cv2.imencode(".jpg", np.full((4, 6, 3), 128, np.uint8))[1].tobytes()


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(JPEG)


def _write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------------- VeRi-776

VERI = {
    "image_train": ["0001_c001_00016450_0.jpg", "0001_c002_00016460_0.jpg", "0003_c005_00020000_1.jpg"],
    "image_query": ["0002_c003_00030000_0.jpg", "0005_c020_00031000_0.jpg"],
    "image_test": ["0002_c004_00040000_0.jpg", "0002_c003_00040100_0.jpg", "0005_c019_00041000_0.jpg",
                   "0006_c001_00042000_0.jpg"],
}
VERI_LISTS = {"image_train": "name_train.txt", "image_query": "name_query.txt", "image_test": "name_test.txt"}


def write_veri(root, lists=True):
    for folder, names in VERI.items():
        for name in names:
            _touch(os.path.join(root, folder, name))
        if lists:
            _write_lines(os.path.join(root, VERI_LISTS[folder]), reversed(names))
    return str(root)


@pytest.mark.parametrize("lists", [True, False])
def test_veri776_reads_folders_and_name_lists(tmp_path, lists):
    write_veri(tmp_path / "VeRi", lists)
    root = str(tmp_path / "VeRi")
    record = datasets.load("veri776", str(tmp_path))  # ROOT may hold the dataset folder under its usual name
    assert record == datasets.load("veri776", root)
    assert record.protocol == "market1501" and datasets.eval_splits("veri776") == (None,)
    assert [(s.pid, s.camid) for s in record.query] == ([(5, 19), (2, 2)] if lists else [(2, 2), (5, 19)])
    assert sorted((s.pid, s.camid) for s in record.gallery) == [(2, 2), (2, 3), (5, 18), (6, 0)]
    assert sorted((s.pid, s.camid) for s in record.train) == [(0, 0), (0, 1), (1, 4)]
    assert all(os.path.isfile(s.path) for s in record.train + record.query + record.gallery)


def test_veri776_bad_input(tmp_path, monkeypatch):
    root = write_veri(tmp_path / "a")
    _touch(os.path.join(root, "image_query", "0007_c001_00050000_0.jpg"))
    with pytest.raises(DatasetError, match=r"image_query: 1 images are not in .*name_query.txt, e.g. 0007_c001"):
        veri776.load(root)
    os.remove(os.path.join(root, "image_query", "0007_c001_00050000_0.jpg"))
    os.remove(os.path.join(root, "image_test", "0002_c004_00040000_0.jpg"))
    with pytest.raises(DatasetError, match=r"name_test.txt:4: .*image_test/0002_c004_00040000_0.jpg does not exist"):
        veri776.load(root)
    _write_lines(os.path.join(root, "name_test.txt"), VERI["image_test"][1:] + VERI["image_test"][1:2])
    with pytest.raises(DatasetError, match=r"name_test.txt:4: 0002_c003_00040100_0.jpg is listed twice"):
        veri776.load(root)
    with pytest.raises(DatasetError, match="veri776 has one fixed train/query/gallery split; got split='test'"):
        veri776.load(root, split="test")
    bad = write_veri(tmp_path / "b", lists=False)
    _touch(os.path.join(bad, "image_train", "car_0001.jpg"))
    with pytest.raises(DatasetError, match=r"image_train/car_0001.jpg: malformed image name, expected a name like "
                                           r"0001_c001_00016450_0.jpg"):
        veri776.load(bad)
    with pytest.raises(DatasetError, match=r"missing VeRi-776 root folder: .*/c"):
        veri776.load(str(tmp_path / "c"))
    _touch(os.path.join(bad, "image_query", "0002_c021_00040000_0.jpg"))
    os.remove(os.path.join(bad, "image_train", "car_0001.jpg"))
    with pytest.raises(DatasetError, match=r"image_query/0002_c021_00040000_0.jpg: camera 21 is outside 1..20"):
        veri776.load(bad)
    os.rename(os.path.join(bad, "image_train"), os.path.join(bad, "train"))
    with pytest.raises(DatasetError, match=r"missing VeRi-776 image folder: .*b/image_train"):
        veri776.load(bad)
    full = write_veri(tmp_path / "d", lists=False)
    monkeypatch.setitem(veri776.OFFICIAL, "gallery", {"ids": 3, "images": 5})
    with pytest.raises(DatasetError, match=r"d/image_test: 4 images \(official: 5\); the download looks"):
        veri776.load(full)
    assert len(veri776.load(full, check_counts=False).gallery) == 4
    with pytest.raises(DatasetError, match=r"d/image_train: 2 ids \(official: 576\), 3 images \(official: "
                                           r"37,778\), 3 cameras \(official: 20\)"):
        veri776.load(full, check_counts=True)


# ---------------------------------------------------------------------------------------------------- VehicleID

def write_vehicleid(root, test_sizes=(800,)):
    """Train vehicles 1-3 and test vehicles 10-14 (3, 1, 4, 2, 5 images), with test_list_<N>.txt for each size."""
    train = [f"{1000 + i:07d} {1 + i % 3}" for i in range(7)]
    test = [f"{2000 + 10 * v + k:07d} {v}" for v, n in zip(range(10, 15), (3, 1, 4, 2, 5)) for k in range(n)]
    for line in train + test:
        _touch(os.path.join(root, "image", line.split()[0] + ".jpg"))
    _write_lines(os.path.join(root, "train_test_split", "train_list.txt"), train)
    for size in test_sizes:
        _write_lines(os.path.join(root, "train_test_split", f"test_list_{size}.txt"), test)
    return str(root)


def test_vehicleid_trials(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    record = datasets.load("vehicleid", str(tmp_path), split="800/0")
    assert record.protocol == "vehicleid" and record.split == "800/0"
    assert record.num_train_pids == 3 and len(record.train) == 7 and {s.camid for s in record.train} == {0}
    assert sorted(s.pid for s in record.gallery) == [10, 11, 12, 13, 14]  # one image per vehicle
    assert len(record.query) == 15 - 5 and {s.camid for s in record.query} == {1}
    assert {s.camid for s in record.gallery} == {0}
    assert sorted(s.path for s in record.query + record.gallery) == sorted(
        os.path.join(root, "image", f"{2000 + 10 * v + k:07d}.jpg")
        for v, n in zip(range(10, 15), (3, 1, 4, 2, 5)) for k in range(n))
    assert datasets.load("vehicleid", root, split="800/0") == record
    assert datasets.load("vehicleid", root, split="800") == record
    galleries = {tuple(s.path for s in vehicleid.load(root, split=f"800/{t}").gallery) for t in range(10)}
    assert len(galleries) > 1, "different trials must draw different galleries"
    reseeded = {tuple(s.path for s in vehicleid.load(root, split="800/0", seed=seed).gallery) for seed in range(10)}
    assert len(reseeded) > 1, "different seeds must draw different galleries"
    assert datasets.eval_splits("vehicleid", test_size=1600) == tuple(f"1600/{t}" for t in range(10))
    assert datasets.eval_splits("vehicleid", trials=2) == ("800/0", "800/1")


def test_vehicleid_bad_input(tmp_path, monkeypatch):
    root = write_vehicleid(tmp_path / "a", test_sizes=(800, 3200))
    assert vehicleid.load(root, split="3200/1").split == "3200/1"  # other test lists of the download work too
    for split in ("900", "800/10", "large", "800/x"):
        with pytest.raises(DatasetError, match=r"vehicleid: unknown split .*valid splits: 800/0..800/9, "
                                               r"1600/0..1600/9, 2400/0..2400/9, 3200/0..3200/9"):
            vehicleid.load(root, split=split)
    with pytest.raises(DatasetError, match=r"missing list file: .*test_list_1600.txt"):
        vehicleid.load(root, split="1600/0")
    with pytest.raises(DatasetError, match="split '800/1' is of test list 800 but test_size=2400"):
        vehicleid.load(root, split="800/1", test_size=2400)
    os.remove(os.path.join(root, "image", "0002123.jpg"))
    with pytest.raises(DatasetError, match=r"test_list_800.txt:8: .*image/0002123.jpg does not exist"):
        vehicleid.load(root)
    _write_lines(os.path.join(root, "train_test_split", "train_list.txt"), ["0001000 1", "0001001 car"])
    with pytest.raises(DatasetError, match=r"train_list.txt:2: vehicle id 'car' is not a non-negative integer"):
        vehicleid.load(root)
    _write_lines(os.path.join(root, "train_test_split", "train_list.txt"), ["0001000"])
    with pytest.raises(DatasetError, match=r"train_list.txt:1: expected at least 2 fields"):
        vehicleid.load(root)
    with pytest.raises(DatasetError, match=r"missing VehicleID root folder: .*/b"):
        vehicleid.load(str(tmp_path / "b"))
    os.makedirs(tmp_path / "b" / "train_test_split")
    with pytest.raises(DatasetError, match=r"missing VehicleID image folder: .*b/image"):
        vehicleid.load(str(tmp_path / "b"))
    full = write_vehicleid(tmp_path / "c")
    os.rename(os.path.join(full, "train_test_split", "test_list_800.txt"),
              os.path.join(full, "train_test_split", "test_list_5.txt"))
    monkeypatch.setattr(vehicleid, "OFFICIAL_TEST_IMAGES", {5: 16})
    with pytest.raises(DatasetError, match=r"test_list_5.txt: 15 images \(official: 16\)"):
        vehicleid.load(full, split="5/0")
    monkeypatch.setattr(vehicleid, "OFFICIAL_TRAIN", {"ids": 3, "images": 8})
    with pytest.raises(DatasetError, match=r"train_list.txt: 7 images \(official: 8\)"):
        vehicleid.load(full, split="5/0")
    assert len(vehicleid.load(full, split="5/0", check_counts=False).train) == 7


# ---------------------------------------------------------------------------------------------------- VERI-Wild

def write_veriwild(root, header=True, sizes=(3000,)):
    """Train vehicles 1-2, test vehicles 7-9; one query each; cameras from vehicle_info.txt."""
    train = ["00001/000001", "00001/000002", "00002/000010"]
    test = ["00007/000100", "00007/000101", "00007/000102", "00008/000200", "00008/000201", "00009/000300",
            "00009/000301"]
    query = ["00007/000100", "00008/000201", "00009/000300"]
    cameras = {key: 1 + i % 4 for i, key in enumerate(train + test)}
    for key in train + test:
        _touch(os.path.join(root, "images", key + ".jpg"))
    split_dir = os.path.join(root, "train_test_split")
    _write_lines(os.path.join(split_dir, "train_list.txt"), train)
    for size in sizes:
        _write_lines(os.path.join(split_dir, f"test_{size}.txt"), test)
        _write_lines(os.path.join(split_dir, f"test_{size}_query.txt"), query)
    info = (["id/image;Camera ID;Time;Model;Type;Color"] if header else []) + [
        f"{key};{cam};2015-04-0{cam} 10:00:00;Audi;SUV;white" for key, cam in cameras.items()]
    _write_lines(os.path.join(split_dir, "vehicle_info.txt"), info)
    return str(root), cameras


@pytest.mark.parametrize("header", [True, False])
def test_veriwild_reads_lists_and_cameras(tmp_path, header):
    root, cameras = write_veriwild(tmp_path / "VERI-Wild", header)
    record = datasets.load("veriwild", str(tmp_path))
    assert record.protocol == "market1501" and record.split == "3000"
    key = lambda s: os.path.relpath(s.path, os.path.join(root, "images"))[:-4]  # noqa: E731
    assert [key(s) for s in record.query] == ["00007/000100", "00008/000201", "00009/000300"]
    assert [key(s) for s in record.gallery] == ["00007/000101", "00007/000102", "00008/000200", "00009/000301"]
    assert all(s.camid == cameras[key(s)] and s.pid == int(key(s)[:5]) for s in record.query + record.gallery)
    assert record.num_train_pids == 2 and [s.camid for s in record.train] == [1, 2, 3]
    assert datasets.eval_splits("veriwild", test_size=10000) == ("10000",)
    assert datasets.load("veriwild", root, split="3000") == record


def test_veriwild_bad_input(tmp_path, monkeypatch):
    root, _ = write_veriwild(tmp_path / "a", sizes=(3000, 5000))
    assert veriwild.load(root, split="5000").split == "5000"
    for split in ("3000/0", "small", "7000"):
        with pytest.raises(DatasetError, match=r"veriwild: unknown split .*valid splits: 3000, 5000, 10000"):
            veriwild.load(root, split=split)
    with pytest.raises(DatasetError, match=r"missing list file: .*test_10000_query.txt"):
        veriwild.load(root, split="10000")
    split_dir = os.path.join(root, "train_test_split")
    with open(os.path.join(split_dir, "test_3000.txt"), "a") as f:
        f.write("00009/000999\n")
    with pytest.raises(DatasetError, match=r"test_3000.txt:8: 00009/000999 has no camera in vehicle_info.txt"):
        veriwild.load(root)
    with open(os.path.join(split_dir, "vehicle_info.txt"), "a") as f:
        f.write("00009/000999;3;2015-04-03 10:00:00;Audi;SUV;white\n")
    with pytest.raises(DatasetError, match=r"test_3000.txt:8: .*images/00009/000999.jpg does not exist"):
        veriwild.load(root)
    with open(os.path.join(split_dir, "vehicle_info.txt"), "a") as f:
        f.write("00009/000998;north gate;x\n")
    with pytest.raises(DatasetError, match=r"vehicle_info.txt:13: expected <vid>/<imgid>;<camera>"):
        veriwild.load(root)
    with open(os.path.join(split_dir, "vehicle_info.txt")) as f:
        lines = f.read().splitlines()[:-1]
    _write_lines(os.path.join(split_dir, "vehicle_info.txt"), lines)
    _write_lines(os.path.join(split_dir, "train_list.txt"), ["00001-000001"])
    with pytest.raises(DatasetError, match=r"train_list.txt:1: expected <vid>/<imgid>, got '00001-000001'"):
        veriwild.load(root)
    os.remove(os.path.join(split_dir, "vehicle_info.txt"))
    with pytest.raises(DatasetError, match=r"missing VERI-Wild camera list: neither .*train_test_split/"
                                           r"vehicle_info.txt nor .*a/vehicle_info.txt exists"):
        veriwild.load(root)
    full, _ = write_veriwild(tmp_path / "b")
    monkeypatch.setattr(veriwild, "OFFICIAL_GALLERY_IMAGES", {3: 5})
    for name in ("test_3000.txt", "test_3000_query.txt"):
        os.rename(os.path.join(full, "train_test_split", name),
                  os.path.join(full, "train_test_split", name.replace("3000", "3")))
    with pytest.raises(DatasetError, match=r"test_3.txt: 4 images \(official: 5\)"):
        veriwild.load(full, split="3")
    assert len(veriwild.load(full, split="3", check_counts=False).gallery) == 4
