"""Your own images without a dataset layout (data.image_lists): a folder of crops, one image or a csv list."""
import os

import cv2
import numpy as np
import pytest

from data.image_lists import image_record
from data.record import DatasetError, Sample


def _image(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), 100, np.uint8))
    return str(path)


@pytest.fixture
def crops(tmp_path, monkeypatch):
    for name in ("b.jpg", "a.png", "c.JPEG"):
        _image(tmp_path / "crops" / name)
    (tmp_path / "crops" / "notes.txt").write_text("not an image")
    _image(tmp_path / "crops" / "sub" / "d.jpg")  # subfolders are not searched
    _image(tmp_path / "probe" / "me.jpg")
    monkeypatch.chdir(tmp_path)  # relative sources, as a user types them
    return tmp_path


def test_a_folder_an_image_or_a_list_become_unlabelled_query_and_gallery_with_absolute_paths(crops):
    record = image_record(query="probe/me.jpg", gallery="crops")
    assert record.name == "" and record.train == ()
    assert record.query == (Sample(str(crops / "probe" / "me.jpg"), None, None),)
    assert [s.path for s in record.gallery] == [str(crops / "crops" / n) for n in ("a.png", "b.jpg", "c.JPEG")]
    assert all(os.path.isabs(s.path) and s.pid is None for s in record.gallery)
    assert not record.is_labelled("query") and not record.is_labelled("gallery")
    (crops / "list.csv").write_text("path\ncrops/b.jpg\nprobe/me.jpg\n")  # relative to the list's folder
    listed = image_record(gallery="list.csv")
    assert [s.path for s in listed.gallery] == [str(crops / "crops" / "b.jpg"), str(crops / "probe" / "me.jpg")]
    (crops / "labelled.csv").write_text("path,pid,camid\nprobe/me.jpg,4,1\n")
    assert image_record(query="labelled.csv").query == (Sample(str(crops / "probe" / "me.jpg"), 4, 1),)


def test_unusable_sources_name_the_flag(crops):
    with pytest.raises(DatasetError, match=r"--gallery_images=crops: .*crops/b.jpg is also a query image "
                                           r"\(--query_images=crops/b.jpg\)"):
        image_record(query="crops/b.jpg", gallery="crops")
    with pytest.raises(DatasetError, match=r"--query_images=crops/sub/none: not found"):
        image_record(query="crops/sub/none", gallery="crops")
    os.makedirs(crops / "empty" / "inner")
    with pytest.raises(DatasetError, match=r"--gallery_images=empty: the folder holds no images .*subfolders are "
                                           r"not searched"):
        image_record(gallery="empty")
    with pytest.raises(DatasetError, match=r"--query_images=crops/notes.txt: neither a folder, an image"):
        image_record(query="crops/notes.txt")
    with pytest.raises(DatasetError, match=r"give --query_images and/or --gallery_images"):
        image_record()
    (crops / "bad.csv").write_text("path\ncrops/missing.jpg\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: image not found"):
        image_record(gallery="bad.csv")
