"""Fault injection (issue 20): training runs killed with SIGKILL at named points (`engine.faults`, REID_FAULT) end,
once restarted, bit-identical to runs that were never killed; unreadable checkpoints are named and skipped.

Each trainer (`tests/fault_child.py`: tiny KVM-MN, baseline and ACP runs with dropout, augmentation and mining on)
is killed once in a child process at a chosen point; the restart and the uninterrupted reference run in this
process (a restart is a new process either way; the child's steps must equal this process's, which the
byte-for-byte comparison checks too). Every tensor of the final checkpoints (weights, optimizer slots, step,
random states, sampler state) must be the same bytes.
"""
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from acp.checkpoint import CheckpointMismatchError
from engine import atomic, faults, run_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_spec = importlib.util.spec_from_file_location("fault_child", os.path.join(HERE, "fault_child.py"))
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)


def run_child(kind, train_dir, data_root, fault):
    """Run the tiny `kind` training in a child process with REID_FAULT=`fault`; it must die of SIGKILL there."""
    env = {**os.environ, faults.ENVIRONMENT: fault, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, os.path.join(HERE, "fault_child.py"), kind, str(train_dir),
                           str(data_root)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, f"the child was not killed at {fault}: rc {done.returncode}\n{done.stderr[-3000:]}"


def tensors(prefix):
    """Every saved tensor of a checkpoint, as bytes; left out: the object graph (a serialised proto) and
    tf.train.Checkpoint's own save counter, which exists only once a checkpoint was restored."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: np.asarray(reader.get_tensor(name)).tobytes() for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter/")}


def assert_same_bytes(prefix, reference):
    got, want = tensors(prefix), tensors(reference)
    assert sorted(got) == sorted(want)
    different = [name for name in want if got[name] != want[name]]
    assert not different, f"{len(different)} of {len(want)} tensors differ from the uninterrupted run: {different[:5]}"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from data import datasets

    root = str(tmp_path_factory.mktemp("synthetic") / "data")
    datasets.load("synthetic", root, progress=False, **child.SYNTHETIC)
    return root


@pytest.fixture(scope="module")
def reference(synthetic_root, tmp_path_factory):
    """reference(kind) -> the train_dir of an uninterrupted run of `kind` (run once per module)."""
    runs = {}

    def get(kind):
        if kind not in runs:
            runs[kind] = str(tmp_path_factory.mktemp("reference") / kind)
            child.RUNS[kind](runs[kind], synthetic_root)
        return runs[kind]

    return get


def restored_steps(caplog):
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("restored ")]


@pytest.mark.parametrize("kind, fault, resumed_from", [
    ("acp", "step:3", 2),  # mid-interval: the steps since checkpoint 2 are redone
    ("kvmmn", "checkpoint_files:4", 4),  # between checkpoint 4's files and the state file, which still says 2
    ("kvmmn", "checkpoint_data:4", 2),  # checkpoint 4's data in place, not its index: checkpoint 4 does not exist
    ("baseline", "checkpoint_state:4", 4),  # after the state file, before older checkpoints are deleted
])
def test_killed_run_resumes_bit_exact(kind, fault, resumed_from, synthetic_root, reference, tmp_path, caplog):
    killed = str(tmp_path / "killed")
    run_child(kind, killed, synthetic_root, fault)
    assert run_dir.checkpoint_steps(killed)[-1] == resumed_from
    if fault.startswith("checkpoint_data"):  # an orphan data file, which the resumed run replaces
        assert os.path.exists(f"{killed}/ckpt-4.data-00000-of-00001")
    if fault.startswith("checkpoint_files"):  # the state file was not updated: the files decide
        assert tf.train.latest_checkpoint(killed).endswith(f"ckpt-{resumed_from - child.CHECKPOINT_EVERY}")
    caplog.set_level(logging.INFO, logger="absl")
    logging.getLogger("absl").setLevel(logging.INFO)
    child.RUNS[kind](killed, synthetic_root)
    assert restored_steps(caplog) == [f"restored {killed}/ckpt-{resumed_from} at step {resumed_from}"]
    reference = reference(kind)
    assert_same_bytes(f"{killed}/ckpt-{child.MAX_STEPS}", f"{reference}/ckpt-{child.MAX_STEPS}")
    assert run_dir.checkpoint_steps(killed) == run_dir.checkpoint_steps(reference) == [2, 4, 6]
    assert not [name for name in os.listdir(killed) if ".tmp-" in name]


def test_corrupt_checkpoint_is_named_and_training_falls_back_to_the_previous_one(reference, tmp_path, caplog):
    train_dir = str(tmp_path / "run")
    shutil.copytree(reference("acp"), train_dir)
    final = tensors(f"{train_dir}/ckpt-6")
    data = f"{train_dir}/ckpt-6.data-00000-of-00001"
    content = open(data, "rb").read()
    with open(data, "wb") as handle:  # truncated, as a full disk or a killed copy leaves it
        handle.write(content[:len(content) // 2])
    with pytest.raises(run_dir.CorruptCheckpointError) as error:
        run_dir.check_readable(f"{train_dir}/ckpt-6")
    message = str(error.value)
    assert "\n" not in message and data in message and "truncated or corrupt" in message
    with pytest.raises(run_dir.CorruptCheckpointError, match="ckpt-6.data"):
        run_dir.resolve(f"{train_dir}/ckpt-6")

    caplog.set_level(logging.INFO, logger="absl")
    logging.getLogger("absl").setLevel(logging.INFO)
    child.run_acp(train_dir)  # skips ckpt-6 with a warning, resumes from ckpt-4, trains steps 5 and 6 again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and data in r.getMessage()]
    assert len(warnings) == 1 and "falling back" in warnings[0]
    assert restored_steps(caplog) == [f"restored {train_dir}/ckpt-4 at step 4"]
    assert tensors(f"{train_dir}/ckpt-6") == final

    # the run records its seed; a restart with another one is refused before it trains
    assert json.load(open(f"{train_dir}/acp_config.json"))["seed"] == 3
    with pytest.raises(CheckpointMismatchError, match="trained with --seed=3, but this run asks for --seed=4"):
        child.run_acp(train_dir, seed=4)
    assert tensors(f"{train_dir}/ckpt-6") == final

    # a flipped byte inside a tensor fails its CRC: named too
    content = bytearray(open(data, "rb").read())
    content[len(content) // 2] ^= 0xFF
    open(data, "wb").write(bytes(content))
    with pytest.raises(run_dir.CorruptCheckpointError, match="ckpt-6.data.*truncated or corrupt"):
        run_dir.check_readable(f"{train_dir}/ckpt-6")
    assert run_dir.latest_checkpoint(train_dir).endswith("ckpt-4")


def test_baseline_records_its_seed_and_refuses_another(tmp_path):
    from features.head import ModelConfig
    from features.training import load_model_config, save_model_config

    config = ModelConfig(num_classes=3, blocks=(1, 1, 1, 1))
    save_model_config(config, str(tmp_path), seed=3)
    assert json.load(open(tmp_path / "baseline_config.json"))["seed"] == 3
    assert load_model_config(str(tmp_path)) == config and save_model_config(config, str(tmp_path), seed=3)
    with pytest.raises(ValueError, match="--seed=3, not --seed=4"):
        save_model_config(config, str(tmp_path), seed=4)


def test_dead_writers_temporaries_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "results.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    left = [tmp_path / f"results.csv.tmp-{dead_pid}.csv", tmp_path / f"results.csv.tmp-{dead_pid}_temp"]
    left[0].write_text("half")
    left[1].mkdir()
    live = tmp_path / f"results.csv.tmp-{os.getppid()}.csv"  # a live process's temporary
    live.write_text("in progress")
    users = [tmp_path / f"notes.tmp-{dead_pid}", tmp_path / "results.csv.tmp-old"]  # not temporaries of the target
    for path in users:
        path.write_text("mine")
    atomic.write_text(str(target), "a,b\n")
    assert not any(path.exists() for path in left)
    assert live.exists() and all(path.exists() for path in users)
    assert target.read_text() == "a,b\n"
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic.write_text(str(tmp_path), "x")


def test_fault_variable_is_checked():
    os.environ[faults.ENVIRONMENT] = "stepp:3"
    try:
        with pytest.raises(ValueError, match="REID_FAULT"):
            faults.point("step", 3)
    finally:
        del os.environ[faults.ENVIRONMENT]
