"""Atomic writes: all or nothing, and the file mode any plain write would get."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tensorfab.files import atomic_path, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_the_written_file_follows_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o644
    assert (tmp_path / "a.md").read_text() == "x"
