"""Atomic writes: a failed writer leaves the earlier complete file and no temporary behind."""
import os

import pytest

from engine import atomic


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic.write_text(str(target), "complete\n")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic.atomic_path(str(target)) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "complete\n"
    assert os.listdir(target.parent) == ["out.txt"]


def test_temporary_is_beside_the_target_and_keeps_its_extension(tmp_path):
    path = str(tmp_path / "figure.png")
    temporary = atomic.temporary_path(path)
    assert os.path.dirname(temporary) == str(tmp_path) and temporary.endswith(".png")
    assert str(os.getpid()) in temporary and temporary != path
