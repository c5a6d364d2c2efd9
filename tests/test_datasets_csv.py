"""The csv list dataset (your own crops) and the public dataset registry."""
import os
import types

import cv2
import numpy as np
import pytest

from data import datasets
from data.record import DatasetError, Record, Sample


def _image(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), 100, np.uint8))
    return str(path)


@pytest.fixture
def crops(tmp_path):
    """A folder of crops named PPPP_II.jpg (a common CUHK03 re-packaging), 8 cameras, identity 0 included."""
    root = tmp_path / "mine"
    for pid in range(3):
        for index in range(4):
            _image(root / "crops" / f"{pid:04d}_{index:02d}.jpg")
    outside = _image(tmp_path / "elsewhere" / "0002_99.jpg")
    (root / "train.csv").write_text("path,pid,camid\ncrops/0000_00.jpg,0,0\ncrops/0000_01.jpg,0,7\n"
                                    "crops/0001_00.jpg,5,1\ncrops/0001_01.jpg,5,2\n")
    (root / "query.csv").write_text("path,pid,camid\ncrops/0002_00.jpg,2,0\n")
    (root / "gallery.csv").write_text(f"path,pid,camid\ncrops/0002_01.jpg,2,8\n{outside},2,3\ncrops/0000_02.jpg,0,6\n")
    return root


def test_csv_lists_load_with_labels_any_cameras_and_identity_zero(crops):
    record = datasets.load("csv", str(crops))
    assert isinstance(record, Record) and record.name == "csv" and record.protocol == "market1501"
    assert [s.pid for s in record.train] == [0, 0, 1, 1]  # train pids relabelled 0..P-1; pid 0 is an identity
    assert {s.camid for s in record.train} == {0, 7, 1, 2}
    assert record.query == (Sample(str(crops / "crops" / "0002_00.jpg"), 2, 0),)
    assert [s.camid for s in record.gallery] == [8, 3, 6] and record.gallery[2].pid == 0
    assert os.path.isabs(record.gallery[1].path) and record.gallery[1].path.endswith("elsewhere/0002_99.jpg")
    assert record.counts()["gallery"] == (2, 3, 3)
    assert all(record.is_labelled(subset) for subset in ("train", "query", "gallery"))
    assert datasets.eval_splits("csv") == (None,)
    assert datasets.load("csv", str(crops), protocol="vehicleid").protocol == "vehicleid"


def test_csv_search_mode_without_labels_and_absent_files(crops):
    (crops / "train.csv").unlink()
    (crops / "query.csv").write_text("path,pid,camid\ncrops/0002_00.jpg,,\n")
    (crops / "gallery.csv").write_text("path,pid,camid\ncrops/0002_01.jpg,,\ncrops/0001_02.jpg,,\n")
    record = datasets.load("csv", str(crops))
    assert record.train == () and len(record.gallery) == 2
    assert record.gallery[0].pid is None and record.gallery[0].camid is None
    assert not record.is_labelled("query") and not record.is_labelled("gallery")
    assert record.counts()["gallery"] == (0, 2, 0)
    assert "gallery  |     0 |        2" in record.summary()
    (crops / "gallery.csv").write_text("path\ncrops/0002_01.jpg\n\"crops/0001_02.jpg\"\n")  # paths alone
    assert datasets.load("csv", str(crops)).gallery == (Sample(str(crops / "crops" / "0002_01.jpg"), None, None),
                                                       Sample(str(crops / "crops" / "0001_02.jpg"), None, None))


@pytest.mark.parametrize("name,text,message", [
    ("query", "path,pid,camid\ncrops/0002_00.jpg,2,0\ncrops/nope.jpg,2,1\n", r"query.csv:3: image not found: .*nope.jpg"),
    ("gallery", "path,pid,camid\ncrops/0002_01.jpg,2,1\n\ncrops/0002_01.jpg,2,1\n",
     r"gallery.csv:4: crops/0002_01.jpg is listed twice \(first on line 2\)"),
    ("train", "path,pid,camid\ncrops/0001_00.jpg,x1,0\n", r"train.csv:2: pid 'x1' is not an integer"),
    ("train", "path,pid,camid\ncrops/0001_00.jpg,1,-2\n", r"train.csv:2: camid -2 is negative"),
    ("query", "path,pid,camid\ncrops/0002_00.jpg,,3\n", r"query.csv:2: camid 3 without a pid"),
    ("query", "path,pid,camid\ncrops/0002_00.jpg,3,\n", r"query.csv:2: pid 3 without a camid"),
    ("train", "path,pid,camid\ncrops/0001_00.jpg,,\n", r"train.csv:2: training images need a pid and a camid"),
    ("gallery", "path,pid,camid\ncrops/0002_01.jpg,2,1\ncrops/0002_02.jpg,,\n",
     r"gallery.csv:3: has no labels but line 2 has labels"),
    ("gallery", "path,camid,pid\ncrops/0002_01.jpg,2,1\n", r"gallery.csv:1: expected the header path,pid,camid"),
    ("gallery", "", r"gallery.csv:1: expected the header path,pid,camid \(or path alone\), found 'an empty file'"),
    ("gallery", "path\ncrops/0002_01.jpg,2,1\n", r"gallery.csv:2: expected 1 field \(path\), got 3"),
    ("train", "path\ncrops/0001_00.jpg\n", r"train.csv:2: training images need a pid and a camid"),
    ("query", "path,pid,camid\ncrops/0002_00.jpg,2\n", r"query.csv:2: expected 3 fields \(path,pid,camid\), got 2"),
])
def test_csv_bad_input_names_file_and_line(crops, name, text, message):
    (crops / f"{name}.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        datasets.load("csv", str(crops))


def test_csv_folder_errors(crops, tmp_path):
    (crops / "query.csv").write_bytes(b"path,pid,camid\ncrops/0002_00.jpg,2,0 \xff\xfe\n")
    with pytest.raises(DatasetError, match=r"query.csv:2: not UTF-8 text \(byte 0xff at column 23\)"):
        datasets.load("csv", str(crops))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds none of train.csv, query.csv, gallery.csv"):
        datasets.load("csv", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="missing csv dataset folder"):
        datasets.load("csv", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="protocol 'cmc' is not one of"):
        datasets.load("csv", str(crops), protocol="cmc")
    with pytest.raises(DatasetError, match="one split"):
        datasets.load("csv", str(crops), split="0")


def test_register_a_reader_makes_it_a_dataset_everywhere(tmp_path):
    calls = []

    def load(root, split=None, **options):
        calls.append((root, split, options))
        return Record("toy", (), (Sample("q.jpg", 1, 0),), (Sample("g.jpg", 1, 1),), split=split or "")

    try:
        datasets.register("toy", load)
        assert "toy" in datasets.names() and datasets.names()[-1] == "toy"
        record = datasets.load("toy", "/somewhere", split="a", size=3)
        assert record.name == "toy" and calls == [("/somewhere", "a", {"size": 3})]
        assert datasets.eval_splits("toy") == (None,)
        with pytest.raises(ValueError, match="'toy' is already registered; pass overwrite=True"):
            datasets.register("toy", load)

        reader = types.SimpleNamespace(load=load, eval_splits=lambda **options: ("0", "1"))
        datasets.register("toy", reader, overwrite=True)
        assert datasets.eval_splits("toy") == ("0", "1")
    finally:
        datasets._REGISTERED.pop("toy", None)
    with pytest.raises(ValueError, match="'market1501' is already built in"):
        datasets.register("market1501", load, overwrite=True)
    with pytest.raises(ValueError, match="needs a load"):
        datasets.register("broken", object())
    with pytest.raises(DatasetError, match="unknown dataset 'toy'; known datasets: .*csv"):
        datasets.load("toy", "/somewhere")
