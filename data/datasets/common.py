"""Small helpers the dataset readers share: checked folders, image listings, list files read as UTF-8 with line
numbers, list paths kept inside their folder, and images listed once."""
from __future__ import annotations

import io
import os
from typing import Iterator

from data.record import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def require_dir(path: str, what: str = "folder") -> str:
    """Return `path` if it is a directory, else raise a DatasetError naming it."""
    if not os.path.isdir(path):
        raise DatasetError(f"missing {what}: {path}")
    return path


def require_file(path: str, what: str = "file") -> str:
    """Return `path` if it is a file, else raise a DatasetError naming it."""
    if not os.path.isfile(path):
        raise DatasetError(f"missing {what}: {path}")
    return path


def list_images(folder: str) -> list[str]:
    """Sorted file names of the images directly inside `folder` (which must exist)."""
    require_dir(folder)
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


class FolderIndex:
    """Which files exist, one directory listing per folder, read on first use (an MSMT17 list names 126K files in
    4,101 folders; a stat per file costs more than a listing per folder)."""

    def __init__(self):
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        if folder not in self._listings:
            self._listings[folder] = frozenset(os.listdir(folder)) if os.path.isdir(folder) else frozenset()
        return name in self._listings[folder]


def read_text(path: str, what: str = "list file") -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); bytes that are not UTF-8 are a DatasetError naming
    the file, the line and the column, not a bare UnicodeDecodeError that names nothing."""
    require_file(path, what)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        line = raw.count(b"\n", 0, error.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                           f"{error.start - line_start + 1}); save the file as UTF-8") from None


def read_list(path: str, min_fields: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, whitespace-split fields) of each non-empty line of a UTF-8 list file.

    A line with fewer than `min_fields` fields raises a DatasetError naming the file and line (as do bytes that
    are not UTF-8, see `read_text`).
    """
    # newline=None: "\r\n" and "\r" end lines as they do for open() in text mode
    for lineno, line in enumerate(io.StringIO(read_text(path), newline=None), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields:
            raise DatasetError(f"{path}:{lineno}: expected at least {min_fields} fields, got {line.strip()!r}")
        yield lineno, fields


def inside(folder: str, relative: str, where: str) -> str:
    """The absolute, normalised path of `relative` under `folder`; a DatasetError naming `where` if `relative` is
    absolute or leaves `folder` (`..`): a list line must not pull in an image of another subset or from outside the
    dataset. Symbolic links are not resolved, so a dataset whose folders link to images elsewhere stays readable.
    """
    base = os.path.abspath(folder)
    if os.path.isabs(relative):
        raise DatasetError(f"{where}: {relative} is an absolute path; list paths are relative to {base}")
    path = os.path.normpath(os.path.join(base, relative))
    if not path.startswith(os.path.join(base, "")):
        raise DatasetError(f"{where}: {relative} leaves {base}; list paths must stay inside that folder")
    return path


def list_once(seen: dict[str, str], path: str, where: str) -> None:
    """Record that `path` is listed at `where` ("file:line"); a second listing in the lists that share `seen` is a
    DatasetError naming both places (an image twice in a gallery is two gallery items; one in train and test leaks
    the test set into training)."""
    first = seen.setdefault(path, where)
    if first != where:
        raise DatasetError(f"{where}: {path} is already listed at {first}")


def fixed_split(**options) -> tuple[None]:
    """`eval_splits` of a dataset with one fixed split (its options do not change that)."""
    del options
    return (None,)
