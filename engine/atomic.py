"""Atomic file writes: the content goes to a temporary name beside the target, then `os.replace` puts it in place,
so a reader (or a killed writer's next run) sees the old complete file or the new complete one, never a half.

The temporary name carries the writer's pid (`<name>.tmp-<pid><suffix>`), so that two processes never share one and
a crashed writer's leftovers can be told apart from a live writer's: every atomic write first removes the
temporaries of ITS target whose pid is no longer running (`remove_dead_temporaries`), so a killed run's leftovers
disappear with the next write of the same file, and nothing else (a user's `notes.tmp-3`, a live writer's
temporary) is touched.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil

from engine import faults

_TEMPORARY = re.compile(r"\.tmp-(\d+)")  # what temporary_path adds to a name


def temporary_path(path: str) -> str:
    """The temporary name beside `path` that this process writes before renaming; the extension is kept last
    (`out.png` -> `out.png.tmp-123.png`), because some writers (OpenCV, numpy) choose the format by it."""
    return f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_temporaries(path: str) -> list[str]:
    """Remove the temporaries of `path` (files or folders named `<name of path>.tmp-<pid>...` beside it) whose pid
    is not a running process: what a killed writer of `path` left. Returns the removed paths.

    Only names that start with the target's own name and carry our temporary mark are considered, so a user's
    files next to an output are never matched; a pid that is alive (another writer, now) keeps its temporary.
    """
    directory, name = os.path.split(os.path.abspath(path))
    removed = []
    try:
        entries = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not entry.startswith(name + ".tmp-"):
            continue
        match = _TEMPORARY.match(entry, len(name))
        if not match or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        full = os.path.join(directory, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(full)
        removed.append(full)
    return removed


def remove_dead_temporaries_in(directory: str) -> list[str]:
    """`remove_dead_temporaries` for every name in `directory`: for folders that only this project writes (a
    training directory it owns), where any `*.tmp-<pid>*` is a temporary of ours."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        targets = {entry[:match.start()] for entry in os.listdir(directory)
                   for match in [_TEMPORARY.search(entry)] if match}
        for target in sorted(targets):
            removed += remove_dead_temporaries(os.path.join(directory, target))
    return removed


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

        with atomic_path("out.png") as temporary:
            cv2.imwrite(temporary, image)

    `path` must not be a folder (IsADirectoryError naming it, before anything is written).
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, where a file is to be written: choose a file name")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_dead_temporaries(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.isdir(temporary) and not os.path.islink(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.lexists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> str:
    """Write `text` to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path


def write_bytes(path: str, content: bytes) -> str:
    """Write `content` to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(content)
    return path


def write_checkpoint(checkpoint, prefix: str, step: int | None = None) -> str:
    """`checkpoint.write(prefix)` (a `tf.train.Checkpoint`), atomically: the files are written under a temporary
    prefix, the data shards renamed into place first and the `.index`, which makes a checkpoint exist for every
    reader, last; a kill leaves either no `<prefix>.index` or a complete checkpoint. Returns `prefix`.
    `step` names the training step for the fault point between the two renames (`engine.faults`)."""
    remove_dead_temporaries(prefix)
    temporary = checkpoint.write(f"{prefix}.tmp-{os.getpid()}")
    directory = os.path.dirname(os.path.abspath(temporary))
    base = os.path.basename(temporary)
    with contextlib.suppress(FileNotFoundError):  # an older checkpoint of this name (e.g. an unreadable one)
        os.remove(f"{prefix}.index")  # first, so that its index never describes the new data
    for entry in os.listdir(directory):
        if entry.startswith(base + ".data-"):
            os.replace(os.path.join(directory, entry), prefix + entry[len(base):])
    if step is not None:
        faults.point("checkpoint_data", step)
    os.replace(f"{temporary}.index", f"{prefix}.index")
    return prefix
