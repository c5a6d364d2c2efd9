"""Small helpers the dataset readers share: checked folders, image listings and list files with line numbers."""
from __future__ import annotations

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


def read_list(path: str, min_fields: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, whitespace-split fields) of each non-empty line of a list file.

    A line with fewer than `min_fields` fields raises a DatasetError naming the file and line.
    """
    require_file(path, "list file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise DatasetError(f"{path}:{lineno}: expected at least {min_fields} fields, got {line.strip()!r}")
            yield lineno, fields


def fixed_split(**options) -> tuple[None]:
    """`eval_splits` of a dataset with one fixed split (its options do not change that)."""
    del options
    return (None,)
