"""features.feature_file (schema, validation, chunked resumable writing) and features.importers (.mat and numpy
imports)."""
import os

import h5py
import numpy as np
import pytest
import scipy.io

from engine import cli
from features import feature_file as feature_files
from features import importers
from features.cli import import_features
from features.feature_file import FeatureFileError, FeatureSet


def make_set(n=7, dim=6, multi_block=True, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    fields = dict(embedding=rng.normal(size=(n, dim)).astype(np.float32), pid=rng.integers(0, 4, n),
                  camid=rng.integers(1, 3, n), split=(["train", "query", "gallery"] * n)[:n],
                  path=np.array([f"img/{i:0{i + 1}d}.jpg" for i in range(n)]), dataset="synthetic", source="test")
    if multi_block:
        fields.update({name: rng.normal(size=(n, width)).astype(np.float32)
                       for name, width in feature_files.RESNET50_BLOCK_WIDTHS.items()})
    fields.update(overrides)
    return FeatureSet(**fields)


def assert_same(a: FeatureSet, b: FeatureSet):
    assert a.arrays().keys() == b.arrays().keys()
    for name, value in a.arrays().items():
        np.testing.assert_array_equal(value, b.arrays()[name], err_msg=name)
    assert (a.dataset, a.source) == (b.dataset, b.source)


@pytest.mark.parametrize("multi_block", [True, False])
def test_round_trip_and_subsets(tmp_path, multi_block):
    original = make_set(multi_block=multi_block)
    loaded = feature_files.load_features(feature_files.save_features(str(tmp_path / "f.npz"), original))
    assert_same(original, loaded)
    assert loaded.split.dtype == np.int8 and loaded.pid.dtype == np.int64 and loaded.embedding.dtype == np.float32
    with np.load(tmp_path / "f.npz") as raw:
        assert int(raw["version"]) == feature_files.FORMAT_VERSION
    query = loaded.query
    assert len(query) == 2 and (query.split == 1).all()
    np.testing.assert_array_equal(query.embedding, original.embedding[[1, 4]])
    assert len(loaded.train) + len(loaded.query) + len(loaded.gallery) == len(loaded)
    assert loaded.has_multi_block == multi_block
    if multi_block:
        assert [b.shape[1] for b in loaded.multi_block] == [512, 1024, 2048]
    else:
        with pytest.raises(FeatureFileError, match="no multi-block features"):
            loaded.multi_block


def nan_row(n=7, dim=6):
    values = np.ones((n, dim), np.float32)
    values[3, 2] = np.nan
    return values


@pytest.mark.parametrize("overrides, message", [
    (dict(pid=np.arange(6)), "field 'pid' has 6 rows but 'embedding' has 7"),
    (dict(path=np.array(["a"] * 8)), "field 'path' has 8 rows"),
    (dict(embedding=nan_row()), "field 'embedding' holds NaN or infinite values \\(first in row 3\\)"),
    (dict(f4=np.full((7, 1024), np.inf, np.float32)), "field 'f4' holds NaN or infinite"),
    (dict(f4=np.zeros((7, 0), np.float32)), "field 'f4' has width 0"),  # any other width is a backbone's
    (dict(f5=None), "multi-block features come as a group"),
    (dict(split=["train"] * 6 + ["test"]), "field 'split' holds unknown names \\['test'\\]"),
    (dict(split=[0] * 6 + [5]), "field 'split' holds codes other than"),
    (dict(pid=np.full(7, 1.5)), "field 'pid' must hold integers"),
    (dict(embedding=np.zeros(7, np.float32)), "field 'embedding' must be 2-D"),
    (dict(version=1), "field 'version' is 1"),  # read from version 1 files, written as the current version
])
def test_bad_arrays_name_the_field(overrides, message):
    with pytest.raises(FeatureFileError, match=message):
        make_set(**overrides)


def test_bad_files_name_the_file_and_field(tmp_path):
    good = make_set()
    arrays = {**good.arrays(), "version": np.int64(1), "dataset": np.str_(""), "source": np.str_("")}
    cases = {
        "version3.npz": ({**arrays, "version": np.int64(3)}, "field 'version' is 3"),
        "noversion.npz": ({k: v for k, v in arrays.items() if k != "version"}, "field 'version' is missing"),
        "nopid.npz": ({k: v for k, v in arrays.items() if k != "pid"}, "required field 'pid' is missing"),
        "extra.npz": ({**arrays, "logits": np.zeros(7)}, "unknown fields \\['logits'\\]"),
        "short.npz": ({**arrays, "camid": np.zeros(3, np.int64)}, "field 'camid' has 3 rows"),
    }
    for name, (content, message) in cases.items():
        np.savez(tmp_path / name, **content)
        with pytest.raises(FeatureFileError, match=f"{tmp_path / name}: {message}"):
            feature_files.load_features(str(tmp_path / name))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(FeatureFileError, match="text.npz: not a readable"):
        feature_files.load_features(str(tmp_path / "text.npz"))
    with pytest.raises(FeatureFileError, match="missing.npz: feature file not found"):
        feature_files.load_features(str(tmp_path / "missing.npz"))


class Killed(Exception):
    pass


def test_chunked_write_resumes_after_a_kill_and_equals_a_one_shot_write(tmp_path):
    rows = [(f"person/{i:03d}" + "x" * (i % 5), i % 3) for i in range(23)]  # paths of varying length
    expected = make_set(n=23, seed=3, split=[code for _, code in rows], path=np.array([p for p, _ in rows]))
    calls = []

    def compute(chunk, fail_at=None):
        if len(calls) == fail_at:
            raise Killed
        start = [r for r, _ in rows].index(chunk[0][0])
        calls.append(start)
        return expected.select(np.arange(start, start + len(chunk)))

    output = str(tmp_path / "out" / "set.npz")
    plan = {"dataset": "synthetic", "checkpoint": "ckpt-1"}
    with pytest.raises(Killed):
        feature_files.write_chunked(output, rows, lambda c: compute(c, fail_at=2), 5, plan)
    parts = sorted(os.listdir(output + ".parts"))
    assert parts == [".reid-owned", "chunk_00000.npz", "chunk_00001.npz", "manifest.json"] \
        and not os.path.exists(output)
    calls.clear()
    written = feature_files.write_chunked(output, rows, compute, 5, plan, dataset="synthetic", source="test")
    assert calls == [10, 15, 20]  # only the chunks that were not on disk
    assert not os.path.exists(output + ".parts")
    assert_same(feature_files.load_features(written), expected)


def test_chunked_write_refuses_parts_of_another_job(tmp_path):
    rows = [(f"p{i}", 0) for i in range(4)]
    output = str(tmp_path / "set.npz")
    with pytest.raises(Killed):
        feature_files.write_chunked(output, rows, lambda chunk: (_ for _ in ()).throw(Killed()), 2, {"checkpoint": "a"})
    with pytest.raises(FeatureFileError, match=r"set.npz.parts: holds chunks of another job \(differs in "
                                               r"\['checkpoint'\]\)"):
        feature_files.write_chunked(output, rows, lambda chunk: None, 2, {"checkpoint": "b"})
    done = feature_files.write_chunked(output, rows, lambda chunk: make_set(n=len(chunk), split=[0] * len(chunk)), 2,
                                  {"checkpoint": "b"}, overwrite=True)
    assert len(feature_files.load_features(done)) == 4


# ----------------------------------------------------------------------------------------------- imports
def layumi_arrays(seed=0, nq=5, ng=9, dim=4):
    rng = np.random.default_rng(seed)
    gallery_label = rng.integers(1, 4, ng)
    gallery_label[2] = -1  # junk
    return dict(query_f=rng.normal(size=(nq, dim)).astype(np.float32),
                query_label=rng.integers(1, 4, nq), query_cam=rng.integers(1, 7, nq),
                gallery_f=rng.normal(size=(ng, dim)).astype(np.float32),
                gallery_label=gallery_label, gallery_cam=rng.integers(1, 7, ng))


def check_layumi_import(imported: FeatureSet, arrays: dict):
    keep = arrays["gallery_label"] != -1
    np.testing.assert_allclose(imported.query.embedding, arrays["query_f"])
    np.testing.assert_array_equal(imported.query.pid, arrays["query_label"])
    np.testing.assert_array_equal(imported.query.camid, arrays["query_cam"])
    np.testing.assert_allclose(imported.gallery.embedding, arrays["gallery_f"][keep])
    np.testing.assert_array_equal(imported.gallery.pid, arrays["gallery_label"][keep])
    np.testing.assert_array_equal(imported.gallery.camid, arrays["gallery_cam"][keep])
    assert len(imported.train) == 0 and imported.dataset == "market1501"


def test_import_matlab_v5_pytorch_result(tmp_path):
    arrays = layumi_arrays()
    path = str(tmp_path / "pytorch_result.mat")
    scipy.io.savemat(path, arrays)  # as layumi's test.py does: labels become 1 x N rows
    imported = importers.import_mat(path, dataset="market1501")
    check_layumi_import(imported, arrays)
    assert imported.source == "import pytorch_result.mat"


def write_v73(path, arrays):
    """A MATLAB v7.3 file: HDF5 with MATLAB's 512-byte header, matrices stored column-major (transposed)."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in arrays.items():
            handle[key] = np.asarray(value, np.float64 if key.endswith("_f") else np.int64).reshape(
                1, -1).T if value.ndim == 1 else value.T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def test_import_matlab_v73_pytorch_result(tmp_path):
    arrays = layumi_arrays(seed=1)
    path = str(tmp_path / "pytorch_result_v73.mat")
    write_v73(path, arrays)
    assert scipy.io.matlab.matfile_version(path)[0] == 2
    with h5py.File(path, "r") as handle:
        assert handle["query_f"].shape == (4, 5)  # D x N on disk
    check_layumi_import(importers.import_mat(path, dataset="market1501"), arrays)


def test_import_mat_errors_name_the_field(tmp_path):
    arrays = layumi_arrays()
    path = str(tmp_path / "incomplete.mat")
    scipy.io.savemat(path, {k: v for k, v in arrays.items() if k != "gallery_cam"})
    with pytest.raises(FeatureFileError, match="incomplete.mat: field 'gallery_cam' is missing"):
        importers.import_mat(path)
    path = str(tmp_path / "mismatch.mat")
    scipy.io.savemat(path, {**arrays, "query_cam": arrays["query_cam"][:3]})
    with pytest.raises(FeatureFileError, match="mismatch.mat: query camids has 3 entries but query features have 5"):
        importers.import_mat(path)
    path = str(tmp_path / "nan.mat")
    bad = arrays["gallery_f"].copy()
    bad[0, 0] = np.nan
    scipy.io.savemat(path, {**arrays, "gallery_f": bad})
    with pytest.raises(FeatureFileError, match=r"nan.mat \[gallery\]: field 'embedding' holds NaN"):
        importers.import_mat(path)


def test_import_numpy_arrays_from_files(tmp_path):
    arrays = layumi_arrays(seed=2)
    np.save(tmp_path / "q.npy", arrays["query_f"])
    np.savez(tmp_path / "labels.npz", query=arrays["query_label"], gallery=arrays["gallery_label"])
    np.savetxt(tmp_path / "qcam.txt", arrays["query_cam"], fmt="%d")
    np.savetxt(tmp_path / "gcam.csv", arrays["gallery_cam"][None], fmt="%d", delimiter=",")
    np.save(tmp_path / "g.npy", arrays["gallery_f"])
    load = importers.load_array
    imported = importers.import_arrays(
        load(str(tmp_path / "q.npy"), "--query_features"), load(f"{tmp_path}/labels.npz:query", "--query_pids"),
        load(str(tmp_path / "qcam.txt"), "--query_camids"), load(str(tmp_path / "g.npy"), "--gallery_features"),
        load(f"{tmp_path}/labels.npz:gallery", "--gallery_pids"), load(str(tmp_path / "gcam.csv"), "--gallery_camids"),
        dataset="market1501")
    check_layumi_import(imported, arrays)
    with pytest.raises(FeatureFileError, match="labels.npz: holds .* name one as"):
        load(str(tmp_path / "labels.npz"), "--query_pids")
    with pytest.raises(FeatureFileError, match="labels.npz: has no array 'train'"):
        load(f"{tmp_path}/labels.npz:train", "--train_pids")
    with pytest.raises(FeatureFileError, match="nothing.npy: file not found \\(for --query_features\\)"):
        load(str(tmp_path / "nothing.npy"), "--query_features")
    with pytest.raises(FeatureFileError, match="gallery pids has 5 entries but gallery features have 9"):
        importers.import_arrays(arrays["query_f"], arrays["query_label"], arrays["query_cam"],
                                     arrays["gallery_f"], arrays["gallery_label"][:5], arrays["gallery_cam"])
    with pytest.raises(FeatureFileError, match="feature dimensions differ between splits"):
        importers.import_arrays(arrays["query_f"], arrays["query_label"], arrays["query_cam"],
                                     arrays["gallery_f"][:, :3], arrays["gallery_label"], arrays["gallery_cam"])


def test_import_command_line(tmp_path):
    arrays = layumi_arrays(seed=4)
    scipy.io.savemat(tmp_path / "pytorch_result.mat", arrays)
    output = tmp_path / "imported.npz"
    fv = import_features.FLAGS
    cli.parse(fv, ["acp-import-features", f"--input={tmp_path / 'pytorch_result.mat'}", f"--output={output}",
        "--dataset=market1501", "--protocol=single_shot", "--dataset_split=0"])
    try:
        import_features.main([])
    finally:
        fv.unparse_flags()
    imported = feature_files.load_features(str(output))
    check_layumi_import(imported, arrays)
    assert (imported.protocol, imported.dataset_split) == ("single_shot", "0")  # recorded for acp-rerank


def test_import_without_labels_is_search_mode(tmp_path):
    """Features alone (no pids, no camids) import as unlabelled query and gallery rows (acp-import-features passes
    only the arrays given, which was a TypeError traceback before)."""
    arrays = layumi_arrays(seed=5)
    np.save(tmp_path / "q.npy", arrays["query_f"])
    np.save(tmp_path / "g.npy", arrays["gallery_f"])
    given = {"query_features": str(tmp_path / "q.npy"), "gallery_features": str(tmp_path / "g.npy")}
    loaded = importers.import_arrays(**{name: importers.load_array(spec, name) for name, spec in given.items()})
    imported = feature_files.load_features(feature_files.save_features(str(tmp_path / "search.npz"), loaded))
    assert not imported.labelled and len(imported.query) == 5 and len(imported.gallery) == 9
    assert (imported.pid == feature_files.NO_LABEL).all() and (imported.camid == feature_files.NO_LABEL).all()
    np.testing.assert_array_equal(imported.query.embedding, arrays["query_f"])  # nothing dropped as junk
    # labelled queries beside an unlabelled gallery: each split as given; the set is not labelled throughout
    mixed = importers.import_arrays(arrays["query_f"], arrays["query_label"], arrays["query_cam"], arrays["gallery_f"])
    assert mixed.query.labelled and not mixed.gallery.labelled and not mixed.labelled
    with pytest.raises(FeatureFileError, match="query pids without query camids; give both or"):
        importers.import_arrays(arrays["query_f"], arrays["query_label"], None, arrays["gallery_f"])
    with pytest.raises(FeatureFileError, match="gallery features are missing"):
        importers.import_arrays(arrays["query_f"])
    with pytest.raises(FeatureFileError, match="train features need train pids and camids"):
        importers.import_arrays(arrays["query_f"], gallery_features=arrays["gallery_f"],
                                train_features=arrays["gallery_f"])
    with pytest.raises(FeatureFileError, match="row 1 has a pid or a camid of -1 .* but not both"):
        FeatureSet(embedding=np.zeros((2, 3)), pid=[3, -1], camid=[0, 2], split=[1, 2])
