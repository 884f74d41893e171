"""The local process backend with short Python children: start, signal, poll, adopt."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from tensorfab.jobs.backend import GONE, Ended, Handle, Launch, LocalBackend
from tensorfab.jobs.supervisor import exit_code, start_ticks

WAIT_S = 20.0


def _launch(tmp_path: Path, code: str, attempt: int = 1, **kw: object) -> Launch:
    return Launch(
        job_id=1,
        attempt=attempt,
        job_dir=tmp_path / "job",
        argv=[sys.executable, "-c", code],
        cwd=str(tmp_path),
        **kw,  # type: ignore[arg-type]
    )


def _wait_end(backend: LocalBackend, handle: Handle) -> Ended:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        result = backend.poll(handle)
        if result is not None:
            assert isinstance(result, Ended)
            return result
        time.sleep(0.02)
    raise AssertionError("the job did not end in time")


def _wait_file(path: Path) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if path.is_file():
            return json.loads(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


def test_exit_code_is_the_shells_view() -> None:
    assert (exit_code(0), exit_code(3), exit_code(-15), exit_code(-9)) == (0, 3, 143, 137)


def test_start_runs_the_child_with_env_cwd_and_pinned_cores(tmp_path: Path) -> None:
    code = (
        "import os, json; print(json.dumps({'cwd': os.getcwd(), "
        "'cuda': os.environ['CUDA_VISIBLE_DEVICES'], 'omp': os.environ['OMP_NUM_THREADS'], "
        "'cores': sorted(os.sched_getaffinity(0)), 'pgid': os.getpgid(0), 'pid': os.getpid()}))"
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    backend = LocalBackend()
    handle = backend.start(_launch(tmp_path, code, env=env, cores=[0]))
    ended = _wait_end(backend, handle)
    assert ended.exit_code == 0
    printed = json.loads((tmp_path / "job" / "stdout.log").read_text().splitlines()[-1])
    assert printed["cwd"] == str(tmp_path)
    assert (printed["cuda"], printed["omp"], printed["cores"]) == ("", "1", [0])
    assert printed["pgid"] == printed["pid"]  # its own process group
    assert (tmp_path / "job" / "stdout.log").read_text().startswith("--- attempt 1 started ")


def test_exit_status_of_a_failing_child(tmp_path: Path) -> None:
    backend = LocalBackend()
    handle = backend.start(_launch(tmp_path, "import sys; sys.exit(3)"))
    assert _wait_end(backend, handle).exit_code == 3
    record = json.loads((tmp_path / "job" / "exit.json").read_text())
    assert (record["attempt"], record["exit_code"]) == (1, 3)


def test_signal_reaches_the_process_group(tmp_path: Path) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(60)"
    backend = LocalBackend()
    handle = backend.start(_launch(tmp_path, code))
    _wait_file(tmp_path / "job" / "supervisor.json")
    assert backend.poll(handle) is None
    assert backend.signal(handle, signal.SIGTERM)
    assert _wait_end(backend, handle).exit_code == 143


def test_adopt_takes_a_live_supervisor_and_reads_its_end(tmp_path: Path) -> None:
    code = "import time; time.sleep(0.8)"
    first = LocalBackend()
    first.start(_launch(tmp_path, code))
    info = _wait_file(tmp_path / "job" / "supervisor.json")
    assert info["start_ticks"] == start_ticks(info["pid"])
    # a new daemon (another backend object) adopts by the job folder alone
    adopted = LocalBackend().adopt(1, 1, tmp_path / "job")
    assert adopted is not None and adopted.process is None
    assert _wait_end(LocalBackend(), adopted).exit_code == 0
    assert LocalBackend().adopt(1, 1, tmp_path / "job") is not None  # ended: exit file read


def test_adopt_refuses_another_attempts_files_and_a_dead_supervisor(tmp_path: Path) -> None:
    backend = LocalBackend()
    handle = backend.start(_launch(tmp_path, "pass"))
    _wait_end(backend, handle)
    assert backend.adopt(1, 2, tmp_path / "job") is None  # attempt 1's files are not attempt 2's
    # attempt 3 claimed, never started (daemon died in between): nothing to adopt
    assert backend.adopt(1, 3, tmp_path / "job") is None


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    # a record naming this very process with a wrong start time: a pid now used by another
    record = {
        "attempt": 1,
        "pid": os.getpid(),
        "start_ticks": -1,
        "child_pid": os.getpid(),
        "child_start_ticks": -1,
    }
    (job / "supervisor.json").write_text(json.dumps(record))
    handle = Handle(1, 1, job)
    assert not LocalBackend().signal(handle, signal.SIGTERM)
    assert LocalBackend().adopt(1, 1, job) is None
    assert LocalBackend().poll(handle) is GONE


def test_a_killed_supervisor_is_gone_and_its_orphan_killed(tmp_path: Path) -> None:
    backend = LocalBackend()
    handle = backend.start(_launch(tmp_path, "import time; time.sleep(60)"))
    info = _wait_file(tmp_path / "job" / "supervisor.json")
    os.kill(info["pid"], signal.SIGKILL)
    handle.process.wait(timeout=WAIT_S)
    assert backend.poll(handle) is GONE
    deadline = time.monotonic() + WAIT_S
    while _running(info["child_pid"], info["child_start_ticks"]):
        assert time.monotonic() < deadline, "the orphaned job process was not killed"
        time.sleep(0.02)


def _running(pid: int, ticks: int) -> bool:
    """The process lives and is not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return start_ticks(pid) == ticks and stat[stat.rindex(")") + 2] != "Z"
