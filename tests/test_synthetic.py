"""The synthetic dataset: seeded, in the Market-1501 layout, >= 4 cameras per identity, hard look-alike groups, and
written atomically with a metadata file that tells generations apart."""
import collections
import itertools
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data import datasets, synthetic
from data.datasets import market1501
from data.record import DatasetError
from data.synthetic import generator

TINY = dict(num_identities=12, group_size=3, num_cameras=5, min_cameras=4, min_images_per_camera=2,
            max_images_per_camera=3, num_distractors=3, num_junk=2, height=64, width=32)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return synthetic.generate(str(tmp_path_factory.mktemp("synthetic") / "tiny"), **TINY)


def _files(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(root) for f in names if f.endswith(".jpg")}


def _original_pids(record):
    return [market1501.NAMING.parse(s.path)[0] for s in record.train + record.query + record.gallery]


def test_same_seed_same_bytes_other_seed_other_images(tiny_root, tmp_path):
    again = synthetic.generate(str(tmp_path / "again"), **TINY)
    assert _files(again) == _files(tiny_root)
    other = _files(synthetic.generate(str(tmp_path / "other"), **dict(TINY, seed=1)))
    common = set(other) & set(_files(tiny_root))
    assert sum(other[name] != _files(tiny_root)[name] for name in common) == len(common)


def test_layout_is_read_by_the_market_reader_and_the_registry(tiny_root):
    record = datasets.load("synthetic", tiny_root, progress=False, **TINY)
    market = market1501.load(tiny_root)
    assert (record.train, record.query, record.gallery) == (market.train, market.query, market.gallery)
    metadata = synthetic.read_metadata(tiny_root)
    assert metadata["version"] == synthetic.GENERATOR_VERSION and metadata["config"]["seed"] == 0
    assert record.num_train_pids == len(metadata["train_pids"])
    assert {s.pid for s in record.query} == set(metadata["test_pids"])
    assert {s.pid for s in record.gallery} == set(metadata["test_pids"]) | {0}  # distractors kept
    junk = [n for n in os.listdir(os.path.join(tiny_root, "bounding_box_test")) if n.startswith("-1_")]
    assert len(junk) == TINY["num_junk"] and len(record.gallery) == metadata["images"]["gallery"] - len(junk)
    image = cv2.imread(record.query[0].path)
    assert image.shape == (TINY["height"], TINY["width"], 3)


def test_every_identity_is_seen_by_at_least_four_cameras_and_queries_have_matches(tiny_root):
    record = datasets.load("synthetic", tiny_root, progress=False, **TINY)
    cameras = collections.defaultdict(set)
    for subset, samples in (("train", record.train), ("test", record.query + record.gallery)):
        for s in samples:
            if subset == "train" or s.pid != 0:
                cameras[subset, s.pid].add(s.camid)
    assert len(cameras) == TINY["num_identities"]
    assert min(len(c) for c in cameras.values()) >= 4
    gallery = {(s.pid, s.camid) for s in record.gallery}
    for query in record.query:
        assert (query.pid, query.camid) in gallery  # the rest of its track stays in the gallery
        assert any(pid == query.pid and camid != query.camid for pid, camid in gallery)


def _histogram(path):
    image = cv2.imread(path)
    h, w = image.shape[:2]
    hsv = cv2.cvtColor(image[h // 8: h * 7 // 8, w // 4: w * 3 // 4], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [12, 6], [0, 180, 0, 256]).ravel()
    return hist / hist.sum()


def test_look_alike_groups_are_closer_than_other_pairs(tiny_root):
    record = market1501.load(tiny_root)
    paths = collections.defaultdict(list)
    for s, pid in zip(record.train + record.query + record.gallery, _original_pids(record)):
        if pid > 0:
            paths[pid].append(s.path)
    mean_hist = {pid: np.mean([_histogram(p) for p in ps], axis=0) for pid, ps in paths.items()}
    group = {pid: i for i, g in enumerate(synthetic.read_metadata(tiny_root)["groups"]) for pid in g}
    within, between = [], []
    for a, b in itertools.combinations(sorted(mean_hist), 2):
        (within if group[a] == group[b] else between).append(np.abs(mean_hist[a] - mean_hist[b]).sum())
    assert np.mean(within) < 0.8 * np.mean(between)
    assert min(within) > 0  # look-alikes are still different people


def test_existing_root_is_reused_and_other_parameters_are_detected(tiny_root, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("regenerated a current root")

    monkeypatch.setattr(generator, "_write_images", fail)
    assert synthetic.generate(tiny_root, **TINY) == os.path.abspath(tiny_root)
    with pytest.raises(DatasetError, match=r"other parameters \(num_identities 12 != 9\)"):
        synthetic.generate(tiny_root, **dict(TINY, num_identities=9))
    with pytest.raises(DatasetError, match="other parameters"):
        datasets.load("synthetic", tiny_root, progress=False, **dict(TINY, seed=3))
    # Without parameters, an existing root is read as it was generated, whatever its parameters.
    assert datasets.load("synthetic", tiny_root, progress=False).counts() == market1501.load(tiny_root).counts()


def test_overwrite_replaces_only_generated_roots(tmp_path):
    root = str(tmp_path / "data")
    small = dict(TINY, num_identities=4, num_distractors=0, num_junk=0)
    synthetic.generate(root, **small)
    synthetic.generate(root, overwrite=True, **dict(small, seed=5))
    assert synthetic.read_config(root).seed == 5
    assert not [n for n in os.listdir(tmp_path) if n != "data"]  # no staging or old copies left behind
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("user data")
    with pytest.raises(DatasetError, match="not a synthetic dataset"):
        synthetic.generate(str(foreign), overwrite=True, **small)
    assert (foreign / "notes.txt").read_text() == "user data"


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real_render = generator.render.render

    def render_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(generator.render, "render", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(str(tmp_path / "data"), **TINY)
    assert os.listdir(tmp_path) == []


def test_a_killed_generators_folder_is_removed_and_a_running_ones_kept(tmp_path, tiny_root):
    """SIGKILL between the complete temporary folder and its rename (`engine.faults`): the folder, named after the
    dead process, is removed by the next call, which writes the same dataset; a live process's folder is kept."""
    root = str(tmp_path / "data")
    images = sum(synthetic.read_metadata(tiny_root)["images"].values())
    code = f"from data import synthetic; synthetic.generate({root!r}, **{TINY!r})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)),
                             env={**os.environ, "REID_FAULT": f"synthetic_staged:{images}"}, stderr=subprocess.PIPE,
                             text=True)
    assert child.wait(timeout=120) == -9, child.stderr.read()[-2000:]
    [left] = os.listdir(tmp_path)  # complete, never renamed into place
    assert re.fullmatch(rf"\.data\.tmp-{child.pid}-partial-\w+", left) and _files(tmp_path / left) == _files(tiny_root)
    running = tmp_path / f".data.tmp-{os.getppid()}-partial-x"  # a live process's, writing now
    running.mkdir()
    assert synthetic.generate(root, **TINY) == root
    assert sorted(os.listdir(tmp_path)) == [running.name, "data"]
    assert _files(root) == _files(tiny_root)
    assert synthetic.read_metadata(root) == synthetic.read_metadata(tiny_root)


def test_a_concurrent_identical_copy_wins_the_rename(tmp_path, tiny_root):
    root = str(tmp_path / "data")
    shutil.copytree(tiny_root, root)
    staging = str(tmp_path / "staging")
    shutil.copytree(tiny_root, staging)
    generator._move_into_place(staging, root, synthetic.make_config(**TINY))
    assert synthetic.read_config(root) == synthetic.make_config(**TINY)


@pytest.mark.parametrize("params, message", [
    (dict(min_cameras=7, num_cameras=6), "min_cameras=7 must be in 1..num_cameras"),
    (dict(min_images_per_camera=1), "min_images_per_camera=1 must exceed queries_per_camera"),
    (dict(num_identities=1), "num_identities=1"),
    (dict(num_identities=3, group_size=3), "group_size=3 must be in 1..num_identities-1"),
    (dict(colour="red"), "unknown synthetic dataset parameter"),
])
def test_bad_parameters_are_named(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate(str(tmp_path / "x"), **params)


def test_default_root_depends_on_parameters():
    assert synthetic.default_root(synthetic.SyntheticConfig()) == synthetic.DEFAULT_ROOT
    assert synthetic.default_root(synthetic.make_config(seed=2)).endswith("-seed2")


def test_command_line(tmp_path):
    root = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "data.cli.synthetic", f"--root={root}", "--num_identities=4", "--group_size=2",
         "--num_cameras=4", "--max_images_per_camera=2", "--num_distractors=0", "--num_junk=0",
         "--height=32", "--width=16"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 train / 2 test identities" in result.stdout
    assert synthetic.read_config(str(root)).num_identities == 4


def test_generator_progress_is_plain_lines_in_a_log(tmp_path, capsys):
    """Where stderr is not a terminal (a log, CI), the generator's progress is whole lines: no carriage returns or
    terminal codes glued into one line, and a last line with the count and the time taken."""
    synthetic.generate(str(tmp_path / "world"), progress=True, **TINY)
    err = capsys.readouterr().err
    assert "\r" not in err and "\033" not in err, repr(err[:200])
    assert re.search(r"^(\d+)/\1 \[=+\] [\d.]+ images/s in ", err, re.MULTILINE), err
