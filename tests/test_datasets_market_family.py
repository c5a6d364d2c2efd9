"""Market-1501, DukeMTMC-reID and MSMT17 readers on tiny copies of their real on-disk layouts."""
import dataclasses
import os

import cv2
import numpy as np
import pytest

from data import datasets
from data.datasets import dukemtmcreid, market1501, msmt17, reid_layout
from data.record import DatasetError

_PIXELS = np.full((8, 4, 3), 128, np.uint8)


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), _PIXELS)


def _write_market_style(folder, files):
    for subset, names in files.items():
        os.makedirs(os.path.join(folder, subset), exist_ok=True)
        for name in names:
            _touch(os.path.join(folder, subset, name))


MARKET_FILES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000100_01.jpg",
                           "0007_c6s2_000200_02.jpg"],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c4s2_000300_01.jpg"],
    "bounding_box_test": ["0001_c2s1_000301_01.jpg", "0003_c5s3_000400_02.jpg", "0003_c4s2_000310_01.jpg",
                          "0000_c1s1_000002_01.jpg", "-1_c1s1_000401_03.jpg"],
}


@pytest.fixture
def market_root(tmp_path):
    folder = tmp_path / "Market-1501-v15.09.15"
    _write_market_style(folder, MARKET_FILES)
    (folder / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image, ignored")
    return tmp_path


def _by_name(samples):
    return {os.path.basename(s.path): (s.pid, s.camid) for s in samples}


def test_market_parses_relabels_and_handles_junk_and_distractors(market_root):
    record = datasets.load("market1501", str(market_root))
    assert record.name == "market1501" and record.protocol == "market1501"
    assert _by_name(record.train) == {"0002_c1s1_000451_03.jpg": (0, 0), "0002_c2s1_000551_01.jpg": (0, 1),
                                      "0007_c3s1_000100_01.jpg": (1, 2), "0007_c6s2_000200_02.jpg": (1, 5)}
    assert _by_name(record.query) == {"0001_c1s1_001051_00.jpg": (1, 0), "0003_c4s2_000300_01.jpg": (3, 3)}
    gallery = _by_name(record.gallery)
    assert gallery["0000_c1s1_000002_01.jpg"] == (0, 0)  # distractor kept as a negative
    assert "-1_c1s1_000401_03.jpg" not in gallery and len(gallery) == 4  # junk dropped, Thumbs.db ignored
    assert record.counts() == {"train": (2, 4, 4), "query": (2, 2, 2), "gallery": (3, 4, 4)}
    assert all(os.path.isfile(s.path) for s in record.train + record.query + record.gallery)
    assert datasets.eval_splits("market1501") == (None,)


def test_market_accepts_the_dataset_folder_itself(market_root):
    direct = market1501.load(str(market_root / "Market-1501-v15.09.15"))
    assert direct == market1501.load(str(market_root))


def test_market_drops_distractors_from_train_and_query(market_root):
    folder = market_root / "Market-1501-v15.09.15"
    _touch(folder / "bounding_box_train" / "0000_c1s1_000009_01.jpg")
    _touch(folder / "query" / "0000_c2s1_000009_01.jpg")
    record = market1501.load(str(market_root))
    assert all(s.pid != 0 for s in record.query) and record.counts()["train"] == (2, 4, 4)


@pytest.mark.parametrize("subset, name, message", [
    ("query", "0001_c1_f0046182.jpg", "malformed image name"),
    ("query", "person.jpg", "malformed image name"),
    ("bounding_box_test", "0001_c7s1_000301_01.jpg", "camera 7 is outside 1..6"),
    ("bounding_box_test", "0001_c0s1_000301_01.jpg", "camera 0 is outside 1..6"),
    ("bounding_box_train", "1502_c1s1_000301_01.jpg", "identity 1502 is outside 0..1501"),
])
def test_market_bad_names_raise_naming_the_file(market_root, subset, name, message):
    _touch(market_root / "Market-1501-v15.09.15" / subset / name)
    with pytest.raises(DatasetError, match=message) as error:
        market1501.load(str(market_root))
    assert name in str(error.value)


def test_market_missing_folder_and_empty_subset_and_split(market_root, tmp_path):
    folder = market_root / "Market-1501-v15.09.15"
    with pytest.raises(DatasetError, match="one fixed"):
        market1501.load(str(market_root), split="1")
    for name in os.listdir(folder / "query"):
        os.remove(folder / "query" / name)
    with pytest.raises(DatasetError, match=r"query: no query images"):
        market1501.load(str(market_root))
    os.rmdir(folder / "query")
    with pytest.raises(DatasetError, match="no Market-1501 found"):
        market1501.load(str(market_root))
    with pytest.raises(DatasetError, match="missing Market-1501 root folder"):
        market1501.load(str(tmp_path / "nowhere"))


def test_official_counts_checked_when_asked_or_when_the_size_matches(market_root):
    with pytest.raises(DatasetError, match=r"train has \(2, 4, 4\), official \(751, 12936, 6\)"):
        market1501.load(str(market_root), check_counts=True)
    assert market1501.load(str(market_root)).counts()["train"] == (2, 4, 4)  # a tiny copy loads
    # As many images as the "official" split but different identities: checked without being asked.
    same_size = dict(train=(1, 4, 4), query=(2, 2, 2), gallery=(3, 4, 4))
    dataset = reid_layout.MarketStyleDataset("market1501", "Market-1501", ("Market-1501-v15.09.15",),
                                             market1501.NAMING, official_counts=same_size)
    with pytest.raises(DatasetError, match=r"train has \(2, 4, 4\), official \(1, 4, 4\)"):
        dataset.load(str(market_root))
    assert dataset.load(str(market_root), check_counts=False).counts()["train"] == (2, 4, 4)
    exact = dataclasses.replace(dataset, official_counts=market1501.load(str(market_root)).counts())
    assert exact.load(str(market_root), check_counts=True).counts() == exact.official_counts


DUKE_FILES = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c8_f0046300.jpg", "0008_c3_f0026318.jpg"],
    "query": ["0005_c2_f0046985.jpg"],
    "bounding_box_test": ["0005_c1_f0044158.jpg", "7139_c2_f0160815.jpg"],
}


def test_duke_reads_its_naming_and_eight_cameras(tmp_path):
    _write_market_style(tmp_path / "DukeMTMC-reID", DUKE_FILES)
    record = datasets.load("dukemtmcreid", str(tmp_path))
    assert record.name == "dukemtmcreid"
    assert _by_name(record.train) == {"0001_c2_f0046182.jpg": (0, 1), "0001_c8_f0046300.jpg": (0, 7),
                                      "0008_c3_f0026318.jpg": (1, 2)}
    assert _by_name(record.gallery) == {"0005_c1_f0044158.jpg": (5, 0), "7139_c2_f0160815.jpg": (7139, 1)}
    assert dukemtmcreid.DATASET.naming.num_cameras == 8
    with pytest.raises(DatasetError, match=r"train has \(2, 3, 3\), official \(702, 16522, 8\)"):
        dukemtmcreid.load(str(tmp_path), check_counts=True)


@pytest.mark.parametrize("name, message", [("0001_c9_f0046182.jpg", "camera 9 is outside 1..8"),
                                           ("0001_c1s1_000451_03.jpg", "malformed image name")])
def test_duke_bad_names(tmp_path, name, message):
    _write_market_style(tmp_path / "DukeMTMC-reID", DUKE_FILES)
    _touch(tmp_path / "DukeMTMC-reID" / "query" / name)
    with pytest.raises(DatasetError, match=message) as error:
        dukemtmcreid.load(str(tmp_path))
    assert name in str(error.value)


MSMT_LISTS = {
    "list_train.txt": ["0000/0000_000_01_0303morning_0008_0.jpg 0", "0000/0000_001_05_0303noon_0010_1.jpg 0",
                       "0001/0001_000_15_0303afternoon_0020_0.jpg 1"],
    "list_val.txt": ["0001/0001_001_07_0303morning_0030_0.jpg 1"],
    "list_query.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0002/0002_000_03_0113noon_0001_0.jpg 2"],
    "list_gallery.txt": ["0000/0000_001_04_0303morning_0016_0.jpg 0", "0002/0002_001_09_0113noon_0003_2.jpg 2",
                         "0003/0003_000_12_0113noon_0009_0.jpg 3"],
}


def _write_msmt(folder, version, lists=MSMT_LISTS):
    train_dir, test_dir = msmt17.VERSIONS[version]
    for list_name, lines in lists.items():
        image_dir = folder / (train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir)
        for line in lines:
            _touch(image_dir / line.split()[0])
        (folder / list_name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_reads_both_releases(tmp_path, version):
    _write_msmt(tmp_path / f"MSMT17_{version}", version)
    record = datasets.load("msmt17", str(tmp_path))
    train_dir, test_dir = msmt17.VERSIONS[version]
    assert all(f"{os.sep}{train_dir}{os.sep}" in s.path for s in record.train)
    assert all(f"{os.sep}{test_dir}{os.sep}" in s.path for s in record.query + record.gallery)
    assert _by_name(record.train) == {"0000_000_01_0303morning_0008_0.jpg": (0, 0),
                                      "0000_001_05_0303noon_0010_1.jpg": (0, 4),
                                      "0001_000_15_0303afternoon_0020_0.jpg": (1, 14)}
    # Test pids are shifted by one so that list pid 0 (a real person) is not read as a distractor.
    assert _by_name(record.query) == {"0000_000_01_0303morning_0015_0.jpg": (1, 0),
                                      "0002_000_03_0113noon_0001_0.jpg": (3, 2)}
    assert sorted(s.pid for s in record.gallery) == [1, 3, 4]
    assert msmt17.load(str(tmp_path / f"MSMT17_{version}"), version=version) == record


def test_msmt17_include_val_and_counts(tmp_path):
    _write_msmt(tmp_path / "MSMT17_V1", "V1")
    record = msmt17.load(str(tmp_path), include_val=True)
    assert record.counts()["train"] == (2, 4, 4) and record.split == "train+val"
    assert msmt17.load(str(tmp_path)).counts()["train"] == (2, 3, 3)
    with pytest.raises(DatasetError, match=r"official \(1041, 32621, 15\)"):
        msmt17.load(str(tmp_path), include_val=True, check_counts=True)


@pytest.mark.parametrize("line, message", [
    ("0001/0001_000_01_0303morning_0020_0.jpg", "expected at least 2 fields"),
    ("0001/0001_000_01_0303morning_0020_0.jpg 1 extra", "expected '<image path> <pid>'"),
    ("0001/0001_000_01_0303morning_0020_0.jpg one", "malformed line"),
    ("0001/0001.jpg 1", "malformed line"),
    ("0001/0001_000_16_0303morning_0020_0.jpg 1", "camera 16 is outside 1..15"),
    ("0001/0001_000_01_0303morning_0099_0.jpg 1", "does not exist"),
])
def test_msmt17_bad_list_lines_name_file_and_line(tmp_path, line, message):
    folder = tmp_path / "MSMT17_V2"
    _write_msmt(folder, "V2")
    with open(folder / "list_train.txt", "a") as f:
        f.write("\n" + line + "\n")  # the blank line is skipped, the bad one is line 5
    if "does not exist" not in message and "0001.jpg" not in line:
        _touch(folder / "mask_train_v2" / line.split()[0])
    with pytest.raises(DatasetError, match=message) as error:
        msmt17.load(str(tmp_path))
    assert "list_train.txt:5" in str(error.value)


def test_msmt17_version_selection_and_missing_parts(tmp_path):
    folder = tmp_path / "MSMT17_V1"
    _write_msmt(folder, "V1")
    _write_msmt(folder, "V2")  # both releases' image folders beside one set of lists
    with pytest.raises(DatasetError, match="both releases"):
        msmt17.load(str(folder))
    assert "mask_test_v2" in msmt17.load(str(folder), version="V2").query[0].path
    with pytest.raises(DatasetError, match="unknown MSMT17 version"):
        msmt17.load(str(folder), version="V3")
    os.remove(folder / "list_gallery.txt")
    with pytest.raises(DatasetError, match="missing list file.*list_gallery.txt"):
        msmt17.load(str(folder), version="V1")
    with pytest.raises(DatasetError, match="no MSMT17 found"):
        msmt17.load(str(tmp_path / "MSMT17_V1" / "train"))


def test_msmt17_parent_with_both_release_folders_is_ambiguous(tmp_path):
    _write_msmt(tmp_path / "MSMT17_V1", "V1")
    _write_msmt(tmp_path / "MSMT17_V2", "V2")
    with pytest.raises(DatasetError, match="several MSMT17 folders"):
        msmt17.load(str(tmp_path))
    assert "mask_train_v2" in msmt17.load(str(tmp_path), version="V2").train[0].path
