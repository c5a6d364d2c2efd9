"""The run directory of every trainer, and the folders the project owns.

One module for what each training binary (kvmmn-train, acp-baseline-train, acp-train, kvmmn-pretrain...) does
with its `--train_dir`, and for every folder the project creates:

Ownership. A folder the project creates holds a marker file `.reid-owned` naming the tool that made it. The
project writes into, overwrites or deletes a folder only when it carries the marker of the same tool
(`claim`, `remove_owned`), so a user's `mine.parts/` beside `--output=mine.npz` or a dataset folder given as
an export folder is never touched, and one tool never writes into another tool's training folder. `claim`
accepts an empty folder, and a folder without marker that holds the tool's own configuration file (a run of
this tool from before the marker existed); anything else is an `OwnershipError` naming the folder, raised
before any work starts.

Checkpoints. `save_checkpoint` writes `<dir>/ckpt-<step>` atomically (`engine.atomic.write_checkpoint`), then
the `checkpoint` state file TensorFlow tools read, then deletes the checkpoints beyond `keep`. Which checkpoint
a run resumes from is decided by the checkpoint files themselves, not by the state file: a kill between a
checkpoint's files and the state file resumes from the newest complete checkpoint. `latest_checkpoint` skips
checkpoints that cannot be read back entirely (a truncated `.data`, a flipped byte: every tensor is read, with
TensorFlow's CRC check), with a warning naming the file, and gives the newest readable one;
`check_readable` turns such a checkpoint into a one-line `CorruptCheckpointError` naming the file.

Configuration. `write_or_check_config` writes a run's configuration file atomically, or checks that the one
already there describes the same run (`differences`).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from typing import Callable

from absl import logging

from engine import atomic, faults

MARKER = ".reid-owned"
CHECKPOINT_NAME = "ckpt"
STATE_FILE = "checkpoint"  # tf.train's checkpoint state file, kept for TensorFlow's tools
_CHECKPOINT_INDEX = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index$")
_CHECKPOINT_FILE = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.(index|data-\d+-of-\d+)$")


class OwnershipError(ValueError):
    """An output path the project would write or delete is not its own (or is the wrong kind of path)."""


class CorruptCheckpointError(ValueError):
    """A checkpoint's files cannot be read back (truncated, corrupted)."""


# ---------------------------------------------------------------------------------------------- ownership
def owner(directory: str) -> str | None:
    """The tool named by `directory`'s marker, or None without one."""
    try:
        with open(os.path.join(directory, MARKER), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def claim(directory: str, tool: str, signature: str | None = None) -> str:
    """Make `directory` a folder of `tool` (created with its marker), or check that it already is one.

    Accepted: a missing or empty folder (then marked), a folder with `tool`'s marker, and a folder without marker
    holding `signature` (the tool's own configuration file: a run from before markers; then marked). Anything else
    is an OwnershipError naming the folder and what it is, before anything is written. Returns `directory`.
    """
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise OwnershipError(f"{directory} is a file, where {tool} needs a folder: choose another path")
    found = owner(directory)
    if found is not None and found != tool:
        raise OwnershipError(f"{directory} is a folder of {found}, not of {tool}: choose another folder")
    if found is None:
        # a marker being written (`atomic`'s temporary): the workers of one multi-worker run claim it together
        entries = ([e for e in os.listdir(directory) if e != MARKER and not e.startswith(MARKER + ".tmp-")]
                   if os.path.isdir(directory) else [])
        if entries and not (signature and signature in entries):
            raise OwnershipError(f"{directory} is a non-empty folder that {tool} did not create (no {MARKER}; "
                                 f"holds {', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}): "
                                 f"choose a new or empty folder")
        os.makedirs(directory, exist_ok=True)
        atomic.write_text(os.path.join(directory, MARKER), tool + "\n")
    return directory


def remove_owned(directory: str, tool: str) -> bool:
    """Delete `directory` if it is `tool`'s (its marker says so); True when deleted, False when absent.
    OwnershipError naming it when it is anything else."""
    if not os.path.lexists(directory):
        return False
    if os.path.islink(directory) or not os.path.isdir(directory) or owner(directory) != tool:
        raise OwnershipError(f"{directory} was not created by {tool} (no {MARKER} of {tool} in it): not deleting "
                             "it; move it away or choose another output")
    shutil.rmtree(directory)
    return True


def check_output_file(path: str, flag: str = "--output") -> str:
    """Check, before any work, that `path` can become a file: not a folder, its parent not a file. Returns it."""
    if os.path.isdir(path):
        raise OwnershipError(f"{flag}={path} is a folder: give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OwnershipError(f"{flag}={path}: {parent} is a file, not a folder")
    return path


def prepare(train_dir: str, tool: str, signature: str | None = None) -> str:
    """Claim `train_dir` for `tool` (`claim`) and remove what killed processes left in it (their temporaries)."""
    claim(train_dir, tool, signature)
    for path in atomic.remove_dead_temporaries_in(train_dir):
        logging.info("removed %s, left by a killed run", path)
    return train_dir


# ---------------------------------------------------------------------------------------------- configuration
def read_json(path: str, error: type[Exception] = ValueError) -> dict:
    """The JSON object in `path`; `error` naming the file when it is missing, not JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except FileNotFoundError:
        raise error(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON: {err}") from None
    if not isinstance(content, dict):
        raise error(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


def write_or_check_config(directory: str, name: str, content: dict,
                          differences: Callable[[dict], list[str]], error: type[Exception] = ValueError,
                          rewrite: bool = False, what: str = "configuration") -> str:
    """Write `content` as `directory/name` (JSON, atomically), or check the file already there.

    `differences(stored)` lists how the stored content differs from this run's in what must not change; any
    difference is `error` naming the file, `what` it holds and each difference. With `rewrite`, an accepted file is
    written again (the fields allowed to change, e.g. a moved data root, take this run's values). Returns the path.
    """
    path = os.path.join(directory, name)
    if os.path.exists(path):
        found = differences(read_json(path, error))
        if found:
            raise error(f"{path} holds another {what}; use another --train_dir or the same settings:\n  "
                        + "\n  ".join(found))
        if not rewrite:
            return path
    return atomic.write_text(path, json.dumps(content, indent=1))


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoint_prefix(directory: str, step: int) -> str:
    return os.path.join(directory, f"{CHECKPOINT_NAME}-{int(step)}")


def checkpoint_steps(directory: str) -> list[int]:
    """Steps of the checkpoints whose index exists in `directory`, ascending (whatever the state file says)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return sorted(int(m.group(1)) for m in map(_CHECKPOINT_INDEX.match, os.listdir(directory)) if m)
    return []


def check_readable(prefix: str) -> str:
    """Read every tensor of the checkpoint `prefix` (TensorFlow checks each one's CRC); CorruptCheckpointError
    naming the file when one cannot be read back. Returns `prefix`."""
    import tensorflow as tf

    index = f"{prefix}.index"
    if not os.path.isfile(index):
        raise CorruptCheckpointError(f"{index} not found: no checkpoint {prefix}")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise CorruptCheckpointError(f"{index} is unreadable: {_first_line(err)}") from None
    data = ", ".join(sorted(glob.glob(glob.escape(prefix) + ".data-*"))) or f"{prefix}.data-*"
    for name in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(name)
        except (tf.errors.OpError, IndexError, ValueError) as err:  # IndexError: a truncated .data
            raise CorruptCheckpointError(f"{data} is truncated or corrupt (checkpoint {prefix}, tensor {name}): "
                                         f"{_first_line(err)}") from None
    return prefix


def _first_line(err: Exception) -> str:
    message = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}: {message.strip().splitlines()[0] if message.strip() else ''}"


def latest_checkpoint(directory: str) -> str | None:
    """The newest checkpoint of `directory` that reads back entirely, or None; each newer one that does not is
    skipped with a warning naming its file."""
    for step in reversed(checkpoint_steps(directory)):
        prefix = checkpoint_prefix(directory, step)
        try:
            return check_readable(prefix)
        except CorruptCheckpointError as err:
            logging.warning("skipping an unreadable checkpoint, falling back to an older one: %s", err)
    return None


def resolve(path: str, flag: str = "--checkpoint") -> tuple[str, str]:
    """(directory, prefix) of `path`: a training directory (its newest readable checkpoint) or a checkpoint
    prefix `<dir>/ckpt-<step>` (which must read back). FileNotFoundError / CorruptCheckpointError name `flag`."""
    if os.path.isdir(path):
        prefix = latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(f"{flag}={path}: the folder holds no readable checkpoint")
        return path, prefix
    if not os.path.isfile(f"{path}.index"):
        raise FileNotFoundError(f"{flag}={path}: neither a folder nor a checkpoint prefix ({path}.index not found)")
    return os.path.dirname(path) or ".", check_readable(path)


def save_checkpoint(checkpoint, directory: str, step: int, keep: int) -> str:
    """Write `checkpoint` (a tf.train.Checkpoint) as `directory/ckpt-<step>`, atomically; then the state file;
    then delete all but the `keep` newest checkpoints, and any numbered above `step` (those exist only when a
    restart skipped them as unreadable). Returns the prefix."""
    prefix = atomic.write_checkpoint(checkpoint, checkpoint_prefix(directory, step), step)
    faults.point("checkpoint_files", step)
    steps = [s for s in checkpoint_steps(directory) if s <= step]
    kept = steps[-keep:]
    names = [os.path.basename(checkpoint_prefix(directory, s)) for s in kept]
    atomic.write_text(os.path.join(directory, STATE_FILE),
                      f'model_checkpoint_path: "{names[-1]}"\n'
                      + "".join(f'all_model_checkpoint_paths: "{name}"\n' for name in names))
    faults.point("checkpoint_state", step)
    files = [(int(m.group(1)), m.group(2), entry) for entry in os.listdir(directory)
             for m in [_CHECKPOINT_FILE.match(entry)] if m]
    # indexes first: without its index a checkpoint no longer exists, so a kill here leaves only orphan data,
    # which the next save removes with the rest
    for old, kind, entry in sorted(files, key=lambda f: f[1] != "index"):
        if old not in kept:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, entry))
    return prefix
