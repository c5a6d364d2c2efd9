"""Atomic file writes: the content goes to a temporary name beside the target, then `os.replace` puts it in place,
so a reader (or a killed writer's next run) sees the old complete file or the new complete one, never a half.

The temporary name carries the writer's pid (`<name>.tmp-<pid><suffix>`), so that two processes never share one and
a crashed writer's leftovers can be told apart from a live writer's.
"""
from __future__ import annotations

import contextlib
import os


def temporary_path(path: str) -> str:
    """The temporary name beside `path` that this process writes before renaming; the extension is kept last
    (`out.png` -> `out.png.tmp-123.png`), because some writers (OpenCV, numpy) choose the format by it."""
    return f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

        with atomic_path("out.png") as temporary:
            cv2.imwrite(temporary, image)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> str:
    """Write `text` to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path
