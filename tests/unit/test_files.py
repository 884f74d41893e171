"""Atomic writes: all or nothing, the file mode any plain write would get, and no temporary
file of a killed writer left for good."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tensorfab.files import atomic_path, remove_stale_temporaries, write_text_atomic


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


def test_a_writer_that_makes_its_file_0600_still_gets_the_umasks_mode(tmp_path: Path) -> None:
    # safetensors' save_file made model/weights.safetensors 0600 while the rest of a run
    # followed the umask (issue 21): a teammate could read the report but not the model
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "weights.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
        with atomic_path(tmp_path / "private") as tmp:
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"weights.safetensors": 0o640, "private": 0o640}


# A writer that dies between opening its temporary file and renaming it: it prints when the
# temporary file holds data, then waits to be killed (bounded: 30 s at most).
_WRITER = """
import sys, time
from pathlib import Path
from tensorfab.files import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"x" * 4096)
    print(tmp.name, flush=True)
    time.sleep(30)
"""


def _killed_writer(target: Path) -> Path:
    """Run a writer of ``target`` in a subprocess, SIGKILL it mid-write; its leftover temp."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        name = proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert name == f".{target.name}.{proc.pid}.{proc.pid}.tmp"  # main thread's id is the pid
    return target.with_name(name)


def test_the_next_write_removes_the_temp_a_killed_writer_left(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.pt"
    write_text_atomic(target, "old\n")
    leftover = _killed_writer(target)
    assert leftover.is_file()  # SIGKILL runs no cleanup: the temp is there
    assert target.read_text() == "old\n"  # and the target was never touched
    write_text_atomic(target, "new\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
    assert target.read_text() == "new\n"


def test_a_running_writers_temp_and_other_files_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    alive = tmp_path / f".last.pt.{os.getppid()}.tmp"  # our parent: a running process
    others = [tmp_path / ".last.pt.notapid.tmp", tmp_path / ".other.pt.999999999.tmp"]
    for path in (alive, *others):
        path.write_text("x")
    dead = tmp_path / ".last.pt.999999999.tmp"  # above any pid_max: never running
    dead_thread = tmp_path / ".last.pt.999999999.12.tmp"  # the name with the writer's thread
    for path in (dead, dead_thread):
        path.write_text("x")
    assert sorted(remove_stale_temporaries(target)) == [dead_thread, dead]
    assert all(p.is_file() for p in (alive, *others))


def test_two_threads_writing_one_target_at_once_both_succeed(tmp_path: Path) -> None:
    """A second thread's whole write inside the first one's block (the jobs daemon's API and
    agent both write a job's spec.yaml): each has its own temporary, the last rename wins."""
    target = tmp_path / "spec.yaml"
    inside, other_done, errors = threading.Event(), threading.Event(), []

    def slow_writer() -> None:
        try:
            with atomic_path(target) as tmp:
                tmp.write_text("first\n")
                inside.set()
                other_done.wait(10)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inside.wait(10)
    write_text_atomic(target, "second\n")
    other_done.set()
    thread.join(10)
    assert errors == []
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
