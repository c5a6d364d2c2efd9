"""Inputs that used to be read without a word into a wrong dataset, each built in the dataset's real on-disk layout:
list paths that leave the dataset, images listed twice, list pids that contradict the file name, VERI-Wild's
inconsistent camera and test lists, non-UTF-8 list files and file names, a synthetic root whose images no longer
match its manifest, and JPEGs with corrupt scan data. Each must be a one-line DatasetError naming the file (and the
line, for list files): the form the binaries print as `file:line: message`."""
import json
import os
import re

import cv2
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from data import datasets, pipeline, synthetic
from data.datasets import cuhk03, msmt17, vehicleid, veri776, veriwild
from data.record import DatasetError, Sample
from data.synthetic import generator
from test_datasets_cuhk import SMALL as CUHK03_SMALL, write_cuhk03_mat, write_new_protocol_config
from test_datasets_cuhk import cuhk03_root  # noqa: F401 (a fixture)
from test_datasets_market_family import MARKET_FILES, MSMT_LISTS, _write_market_style, _write_msmt
from test_datasets_vehicle import write_vehicleid, write_veri, write_veriwild


def expect(pattern: str, load, *args, **kwargs) -> str:
    """Assert that `load(*args, **kwargs)` raises a one-line DatasetError matching `pattern`; return its text."""
    with pytest.raises(DatasetError) as error:
        load(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message, message
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    return message


def append(path, line: bytes) -> None:
    with open(path, "ab") as f:
        f.write(line + b"\n")


# ----------------------------------------------------------------------------------------------------------- MSMT17

@pytest.fixture
def msmt(tmp_path):
    folder = tmp_path / "MSMT17_V1"
    _write_msmt(folder, "V1")
    assert msmt17.load(str(folder)).counts()["train"] == (2, 3, 3)  # sound before each test breaks it
    return folder


@pytest.mark.parametrize("line, message", [
    # a test image pulled into training through "..", and an image outside the dataset
    (b"../test/0000/0000_000_01_0303morning_0015_0.jpg 0",
     r"list_train.txt:4: \.\./test/0000/0000_000_01_0303morning_0015_0.jpg leaves .*MSMT17_V1/train; list paths"),
    (b"/etc/0000_000_01_0303morning_0015_0.jpg 0", r"list_train.txt:4: /etc/0000_000_01.* is an absolute path"),
    (b"0000/0000_000_01_0303morning_0008_0.jpg 0",
     r"list_train.txt:4: .*train/0000/0000_000_01_0303morning_0008_0.jpg is already listed at .*list_train.txt:1$"),
    (b"0000/./0000_000_01_0303morning_0008_0.jpg 0", r"list_train.txt:4: .* is already listed at .*list_train.txt:1"),
    (b"0001/0001_000_15_0303afternoon_0020_0.jpg 0",
     r"list_train.txt:4: the list gives pid 0 but the file name 0001_000_15_0303afternoon_0020_0.jpg pid 1"),
    (b"0001/0001_000_15_0303afternoon_0020_0.jpg 1 caf\xe9",
     r"list_train.txt:4: not UTF-8 text \(byte 0xe9 at column 48\); save the file as UTF-8"),
])
def test_msmt17_list_lines(msmt, line, message):
    append(msmt / "list_train.txt", line)
    expect(message, msmt17.load, str(msmt))


def test_msmt17_query_gallery_and_train_val_are_disjoint(msmt):
    append(msmt / "list_gallery.txt", MSMT_LISTS["list_query.txt"][1].encode())
    expect(r"list_gallery.txt:4: .*test/0002/0002_000_03_0113noon_0001_0.jpg is already listed at .*list_query.txt:2",
           msmt17.load, str(msmt))
    (msmt / "list_gallery.txt").write_text("\n".join(MSMT_LISTS["list_gallery.txt"]) + "\n")
    append(msmt / "list_val.txt", MSMT_LISTS["list_train.txt"][2].encode())
    assert msmt17.load(str(msmt)).counts()["train"] == (2, 3, 3)  # without include_val the val list is not read
    expect(r"list_val.txt:2: .* is already listed at .*list_train.txt:3", msmt17.load, str(msmt), include_val=True)


# -------------------------------------------------------------------------------------------------------- VehicleID

@pytest.fixture
def vid_root(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    assert len(vehicleid.load(root).query) == 10
    return root


@pytest.mark.parametrize("list_name, line, message", [
    ("train_list.txt", b"../../outside 1", r"train_list.txt:8: \.\./\.\./outside.jpg leaves .*/image; list paths"),
    ("train_list.txt", b"/tmp/0001000 1", r"train_list.txt:8: /tmp/0001000.jpg is an absolute path"),
    ("train_list.txt", b"0002100 1", r"test_list_800.txt:1: .*image/0002100.jpg is already listed at "
                                     r".*train_list.txt:8"),  # a test image in training
    ("test_list_800.txt", b"0002100 10", r"test_list_800.txt:16: .*image/0002100.jpg is already listed at "
                                         r".*test_list_800.txt:1"),
    ("test_list_800.txt", b"0002100 11", r"test_list_800.txt:16: .* is already listed"),  # and with another vehicle
    ("test_list_800.txt", b"0002100 \xff10", r"test_list_800.txt:16: not UTF-8 text \(byte 0xff at column 9\)"),
])
def test_vehicleid_list_lines(vid_root, list_name, line, message):
    append(os.path.join(vid_root, "train_test_split", list_name), line)
    expect(message, vehicleid.load, vid_root)


# -------------------------------------------------------------------------------------------------------- VERI-Wild

@pytest.fixture
def wild(tmp_path):
    root, _ = write_veriwild(tmp_path / "VERI-Wild")
    assert len(veriwild.load(root).gallery) == 4
    return os.path.join(root, "train_test_split")


@pytest.mark.parametrize("list_name, line, message", [
    ("train_list.txt", b"00001/../../00007/000100", r"train_list.txt:4: expected <vid>/<imgid>, got "
                                                    r"'00001/\.\./\.\./00007/000100'"),
    ("train_list.txt", b"00001/000001", r"train_list.txt:4: .*images/00001/000001.jpg is already listed at "
                                        r".*train_list.txt:1"),
    ("test_3000.txt", b"00008/000200", r"test_3000.txt:8: .*00008/000200.jpg is already listed at .*test_3000.txt:4"),
    ("test_3000_query.txt", b"00007/000100", r"test_3000_query.txt:4: .* is already listed at .*query.txt:1"),
    # a training image as a query, and in the test list
    ("test_3000_query.txt", b"00001/000002", r"test_3000_query.txt:4: .*00001/000002.jpg is already listed at "
                                             r".*train_list.txt:2"),
    ("test_3000.txt", b"00002/000010", r"test_3000.txt:8: .*00002/000010.jpg is already listed at .*train_list.txt:3"),
    ("train_list.txt", b"00001/\xe9", r"train_list.txt:4: not UTF-8 text \(byte 0xe9 at column 7\)"),
])
def test_veriwild_list_lines(wild, list_name, line, message):
    append(os.path.join(wild, list_name), line)
    expect(message, veriwild.load, os.path.dirname(wild))


def test_veriwild_queries_must_be_test_images(wild):
    with open(os.path.join(wild, "test_3000.txt")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(wild, "test_3000.txt"), "w") as f:
        f.write("\n".join(line for line in lines if line != "00008/000201") + "\n")
    expect(r"test_3000_query.txt:2: query image .*images/00008/000201.jpg is not in .*test_3000.txt, which lists "
           r"every test image", veriwild.load, os.path.dirname(wild))


def test_veriwild_one_image_two_cameras(wild):
    info = os.path.join(wild, "vehicle_info.txt")
    append(info, b"00001/000002;1;2015-04-01 10:00:00;Audi;SUV;white")  # line 4 gave it camera 2
    expect(r"vehicle_info.txt:12: 00001/000002 has camera 1 here but camera 2 on line 3$", veriwild.load,
           os.path.dirname(wild))
    with open(info, "rb") as f:
        lines = f.read().splitlines()
    with open(info, "wb") as f:
        f.write(b"\n".join(lines[:-1] + [lines[2]]) + b"\n")  # the same camera again is consistent
    assert len(veriwild.load(os.path.dirname(wild)).train) == 3
    append(info, b"00001/00000\xe9;1;2015;Audi \xff;SUV;white")
    expect(r"vehicle_info.txt:13: the image key or camera is not UTF-8 text", veriwild.load, os.path.dirname(wild))
    with open(info, "wb") as f:
        f.write(b"\n".join(lines[:-1] + [b"00009/000999;1;2015;Audi \xff;SUV;white"]) + b"\n")
    assert len(veriwild.load(os.path.dirname(wild)).train) == 3  # a non-UTF-8 model name is not read: accepted


# --------------------------------------------------------------------------------------------------------- VeRi-776

def test_veri776_name_lists(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    append(os.path.join(root, "name_query.txt"), b"../image_train/0001_c001_00016450_0.jpg")
    expect(r"name_query.txt:3: \.\./image_train/0001_c001_00016450_0.jpg leaves .*VeRi/image_query", veri776.load,
           root)
    write_veri(root)
    append(os.path.join(root, "name_query.txt"), b"0002_c003_\xe9.jpg")
    expect(r"name_query.txt:3: not UTF-8 text \(byte 0xe9", veri776.load, root)


# ---------------------------------------------------------------------------------------- non-UTF-8 names and roots

def test_a_non_utf8_file_name_is_named_not_a_tensorflow_crash(tmp_path):
    root = write_veri(tmp_path / "VeRi", lists=False)
    name = os.fsdecode(b"0005_c019_caf\xe9.jpg")  # a valid VeRi name whose tail is Latin-1
    with open(os.path.join(root, "image_test", name), "wb") as f, \
            open(os.path.join(root, "image_test", "0006_c001_00042000_0.jpg"), "rb") as image:
        f.write(image.read())
    expect(r"image_test/0005_c019_caf\\xe9.jpg: the image path is not UTF-8; rename the file or folder",
           veri776.load, root)


def test_a_non_utf8_dataset_folder_is_named(tmp_path):
    _write_market_style(tmp_path / "Market-1501-v15.09.15", MARKET_FILES)
    root = os.path.join(str(tmp_path), os.fsdecode(b"d\xfcsseldorf"), "Market-1501-v15.09.15")
    os.renames(tmp_path / "Market-1501-v15.09.15", root)  # cv2.imwrite crashes on such a path
    expect(r"/d\\xfcsseldorf/Market-1501-v15.09.15/bounding_box_train/0002_c1s1_000451_03.jpg: the image path is "
           r"not UTF-8", datasets.load, "market1501", root)


def test_the_csv_dataset_follows_paths_anywhere_by_design(tmp_path):
    """Your own lists may point outside their folder (documented in data.datasets.csv_lists); still normalised,
    checked to exist, and listed once."""
    outside = tmp_path / "elsewhere" / "0001.jpg"
    os.makedirs(outside.parent)
    cv2.imwrite(str(outside), np.zeros((8, 4, 3), np.uint8))
    lists = tmp_path / "lists"
    os.makedirs(lists)
    (lists / "train.csv").write_text(f"path,pid,camid\n../elsewhere/0001.jpg,1,0\n{outside},1,1\n")
    expect(r"train.csv:3: .*elsewhere/0001.jpg is listed twice \(first on line 2\)", datasets.load, "csv",
           str(lists))
    (lists / "train.csv").write_text("path,pid,camid\n../elsewhere/0001.jpg,1,0\n")
    assert datasets.load("csv", str(lists)).train[0].path == str(outside)
    (lists / "query.csv").write_text(f"path,pid,camid\n{outside},1,2\n")  # a training image as a query
    expect(r"query.csv:2: .*elsewhere/0001.jpg is already listed at .*train.csv:2; an image belongs to one of train, "
           r"query and gallery", datasets.load, "csv", str(lists))
    (lists / "train.csv").unlink()
    (lists / "gallery.csv").write_text("path,pid,camid\n../elsewhere/0001.jpg,,\n")  # search mode: its own match
    (lists / "query.csv").write_text("path,pid,camid\n../elsewhere/0001.jpg,,\n")
    expect(r"gallery.csv:2: .* is already listed at .*query.csv:2", datasets.load, "csv", str(lists))


# -------------------------------------------------------------------------------------------------------- synthetic

SMALL = dict(num_identities=4, group_size=2, num_cameras=4, min_cameras=4, min_images_per_camera=2,
             max_images_per_camera=2, num_distractors=1, num_junk=1, height=32, width=16)


@pytest.fixture
def synthetic_root(tmp_path):
    root = synthetic.generate(str(tmp_path / "synthetic"), **SMALL)
    assert generator.manifest_mismatch(root) is None
    return root


def _images(root):
    return sorted(os.path.join(folder, name) for folder in generator.FOLDERS.values()
                  for name in os.listdir(os.path.join(root, folder)))


def test_synthetic_manifest_records_every_file(synthetic_root):
    metadata = synthetic.read_metadata(synthetic_root)
    assert sorted(metadata["files"]) == _images(synthetic_root)
    assert sum(metadata["images"].values()) == len(metadata["files"])
    size, _ = metadata["files"][_images(synthetic_root)[0]]
    assert os.path.getsize(os.path.join(synthetic_root, _images(synthetic_root)[0])) == size


def _damage(root, how):
    first = os.path.join(root, _images(root)[3])
    if how == "deleted":
        os.remove(first)
    elif how == "added":
        first = os.path.join(root, "query", "0001_c1s1_999999_01.jpg")
        open(first, "wb").write(open(os.path.join(root, _images(root)[0]), "rb").read())
    elif how == "truncated":
        data = open(first, "rb").read()
        open(first, "wb").write(data[:-10])
    else:  # one byte changed: same size, other content
        data = bytearray(open(first, "rb").read())
        data[len(data) // 2] ^= 0x55
        open(first, "wb").write(bytes(data))
    return first


@pytest.mark.parametrize("how, message", [
    ("deleted", "missing \\(the manifest in synthetic.json lists it\\)"),
    ("added", "not written by the generator \\(the manifest in synthetic.json does not list it\\)"),
    ("truncated", "not the [0-9]+-byte file the manifest in synthetic.json records"),
    ("modified", "its content differs from the manifest in synthetic.json \\(CRC-32\\)"),
])
def test_a_synthetic_root_that_no_longer_matches_its_manifest(synthetic_root, how, message):
    before = {name: open(os.path.join(synthetic_root, name), "rb").read() for name in _images(synthetic_root)}
    path = _damage(synthetic_root, how)
    remedy = "; pass another root or overwrite=True \\(--overwrite\\) to regenerate it$"
    expect(re.escape(path) + ": " + message + remedy, synthetic.generate, synthetic_root, **SMALL)
    expect(re.escape(path) + ": " + message, datasets.load, "synthetic", synthetic_root, progress=False)
    expect(re.escape(path) + ": " + message, datasets.load, "synthetic", synthetic_root, progress=False, **SMALL)
    if how == "modified":  # names and sizes only: the cheap check cannot see a changed byte
        assert len(datasets.load("synthetic", synthetic_root, progress=False, checksums=False).gallery) > 0
    assert synthetic.generate(synthetic_root, overwrite=True, **SMALL) == synthetic_root
    assert {name: open(os.path.join(synthetic_root, name), "rb").read() for name in _images(synthetic_root)} == before


def test_a_synthetic_root_from_before_manifests_is_regenerated(synthetic_root, capsys):
    path = os.path.join(synthetic_root, synthetic.METADATA_FILE)
    metadata = json.load(open(path))
    del metadata["files"]
    json.dump(metadata, open(path, "w"))
    os.remove(os.path.join(synthetic_root, _images(synthetic_root)[0]))  # cannot be known without a manifest
    record = datasets.load("synthetic", synthetic_root, progress=True)
    assert "generated before synthetic.json recorded a file manifest; regenerating it" in capsys.readouterr().err
    assert generator.manifest_mismatch(synthetic_root) is None
    assert len(record.train) == synthetic.read_metadata(synthetic_root)["images"]["train"]


# ------------------------------------------------------------------------------------------------------------- JPEG

@pytest.fixture(scope="module")
def sound_jpeg():
    pixels = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8), (5, 5), 0)
    data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    scan = data.index(b"\xff\xda")
    return data, scan + 2 + int.from_bytes(data[scan + 2: scan + 4], "big")  # bytes, start of the scan data


def _corrupt(data: bytes, start: int, how: str) -> bytes:
    middle = (start + len(data)) // 2
    if how == "zeroed":  # 40 bytes of scan data lost to zeros
        return data[:middle] + bytes(40) + data[middle + 40:]
    if how == "marker":  # a stray restart marker in the middle of the scan
        return data[:middle] + b"\xff\xd0" + data[middle + 2:]
    if how.startswith("cut"):  # 50 bytes of scan data lost, the file still ending with its EOI marker
        at = middle + int(how[3:] or 0)
        return data[:at] + data[at + 50:]
    return data[:middle] + bytes(30) + data[middle:]  # 30 bytes too many


@pytest.mark.parametrize("how, warning", [
    ("zeroed", r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9"),
    ("marker", "Corrupt JPEG data: premature end of data segment"),
    ("inserted", r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9"),
    # the Huffman decoder, reading past the gap, ends its last block before the end of the data
    ("cut+80", r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9"),
])
def test_a_jpeg_with_corrupt_scan_data_is_an_error_unless_decoding_is_lenient(tmp_path, sound_jpeg, how, warning):
    data, start = sound_jpeg
    path = str(tmp_path / "0001_c1s1_000001_01.jpg")
    with open(path, "wb") as f:
        f.write(_corrupt(data, start, how))
    message = re.escape(path) + r": corrupt JPEG \(" + warning + r"\); strict_decoding=False accepts"
    expect(message, pipeline.read_image, path)
    expect(message, pipeline.load_image, path, (32, 16))
    with pytest.raises(tf.errors.OpError, match=message):
        list(pipeline.make_dataset([Sample(path, 1, 0)], image_size=(32, 16)))
    # The opt-out: OpenCV decodes what it can (libjpeg warns on stderr) into pixels unlike the sound image's.
    damaged = pipeline.read_image(path, strict=False)
    sound = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert damaged.shape == sound.shape and np.abs(damaged.astype(int) - sound).max() > 50
    images, _, _ = next(iter(pipeline.make_dataset([Sample(path, 1, 0)], image_size=(32, 16),
                                                   strict_decoding=False)))
    assert images.shape == (1, 32, 16, 3)


@pytest.mark.xfail(strict=True, raises=pytest.fail.Exception, reason=(
    "a valid JPEG: the Huffman code resynchronises after the gap and the scan still holds exactly its blocks"))
def test_a_jpeg_whose_cut_the_decoder_absorbs_is_not_detected(tmp_path, sound_jpeg):
    """Known limit of strict decoding: 50 bytes cut from the middle of the scan data (30 of 40 cut positions tried
    across this scan) leave a stream in which every Huffman code is valid and the blocks end exactly at the EOI
    marker, so libjpeg warns of nothing: simplejpeg's strict mode, OpenCV, Pillow and tf.io.decode_jpeg all decode
    it silently into a garbled band and a colour shift below it. JPEG carries no checksum; only one kept beside
    the data can tell (the synthetic dataset's manifest does). Strict xfail: it fails if this ever gets caught."""
    data, start = sound_jpeg
    path = str(tmp_path / "0001_c1s1_000001_01.jpg")
    with open(path, "wb") as f:
        f.write(_corrupt(data, start, "cut"))
    damaged = pipeline.read_image(path, strict=False)
    sound = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.abs(damaged.astype(int) - sound).max() > 50  # damaged indeed
    with pytest.raises(DatasetError, match=re.escape(path) + ": corrupt JPEG"):
        pipeline.read_image(path)


# ------------------------------------------------------------------------------------------ CUHK03 new-protocol config

def test_cuhk03_new_protocol_lists_each_image_once(cuhk03_root):
    cuhk03.load(cuhk03_root, variant="detected", **CUHK03_SMALL)  # extracts the detected images
    config = os.path.join(cuhk03_root, "cuhk03_new_protocol_config_detected.mat")
    write_new_protocol_config(config, os.path.join(cuhk03_root, "cuhk03_release", "images_detected"))
    assert len(datasets.load("cuhk03_detected", cuhk03_root, split="new", verbose=False).gallery) == 7
    data = {k: v for k, v in scipy.io.loadmat(config).items() if not k.startswith("__")}
    for subset, value, message in [
        ("gallery_idx", lambda d: d["query_idx"][1, 0], r"gallery_idx\(2\): .*images_detected/3_001_1_02.png is "
                                                         r"already listed at .*detected.mat: query_idx\(2\)$"),
        ("train_idx", lambda d: d["gallery_idx"][0, 0], r"gallery_idx\(1\): .* is already listed at .*detected.mat: "
                                                        r"train_idx\(2\)$"),  # a test image trained on
        ("query_idx", lambda d: d["query_idx"][0, 0], r"query_idx\(2\): .* is already listed at .*query_idx\(1\)$"),
    ]:
        broken = {k: v.copy() for k, v in data.items()}
        broken[subset][1, 0] = value(data)
        scipy.io.savemat(config, broken)
        expect(message, datasets.load, "cuhk03_detected", cuhk03_root, split="new", verbose=False)


def test_cuhk03_in_a_non_utf8_folder_is_named_not_a_crash(tmp_path):
    """OpenCV's imwrite and imread crash the process (segmentation fault) on such a path; the extraction writes
    without them and the Record names the folder."""
    root = os.path.join(str(tmp_path), os.fsdecode(b"m\xfcnchen"))
    write_cuhk03_mat(os.path.join(root, "cuhk03_release", "cuhk-03.mat"))
    expect(r"m\\xfcnchen/cuhk03_release/images_labeled/\d_\d{3}_\d_\d{2}.png: the image path is not UTF-8",
           datasets.load, "cuhk03_labeled", root, **CUHK03_SMALL)
    assert len(os.listdir(os.path.join(root, "cuhk03_release", "images_labeled"))) > 0


def test_a_png_with_a_changed_byte_is_an_error(tmp_path):
    """PNG chunks carry a CRC that libpng checks, so OpenCV already refuses a damaged PNG (strict or not)."""
    pixels = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8), (5, 5), 0)
    data = bytearray(cv2.imencode(".png", pixels)[1].tobytes())
    data[data.index(b"IDAT") + 60] ^= 0x55
    path = str(tmp_path / "0001_c1s1_000001_01.png")
    with open(path, "wb") as f:
        f.write(bytes(data))
    for strict in (True, False):
        expect(re.escape(path) + ": cannot decode image", pipeline.read_image, path, strict)


def test_the_pipeline_reads_any_path_the_file_system_has(tmp_path, sound_jpeg):
    """Samples that do not come from a Record (which refuses them) may hold a non-UTF-8 path: no TensorFlow error."""
    path = os.path.join(str(tmp_path), os.fsdecode(b"caf\xe9.jpg"))
    with open(path, "wb") as f:
        f.write(sound_jpeg[0])
    images, pids, _ = next(iter(pipeline.make_dataset([Sample(path, 7, 0)], image_size=(32, 16))))
    assert images.shape == (1, 32, 16, 3) and pids.numpy().tolist() == [7]
