"""The jobs daemon end to end: real processes, real digits training on simulated GPUs.

Each test starts ``tensorfab jobs up`` as a subprocess on 127.0.0.1 (port 0, state dir in
tmp_path), drives it through the HTTP API, kills things with SIGKILL, and afterwards checks
the database (through the API) and the run directories. Every wait is bounded; the fixture
stops the daemon and kills any job process left, whatever the test's outcome.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tensorfab.cli.main import main
from tensorfab.jobs.client import JobsClient
from tensorfab.jobs.daemon import DaemonProcess
from tensorfab.jobs.supervisor import SUPERVISOR, read_json
from tensorfab.spec import dump_spec, load_spec

REPO = Path(__file__).resolve().parents[3]
DIGITS = REPO / "examples" / "digits-lenet.yaml"
FINAL = ("succeeded", "failed", "cancelled")
# 1 epoch, on the CPU, with a mid-epoch checkpoint every 5 steps so a job killed with
# SIGKILL (no chance to save) still resumes from somewhere
DIGITS_SETTINGS = ["train.epochs=1", "train.device=cpu", "train.checkpoint_every_steps=5"]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons on tmp_path/state; all are stopped and their jobs killed at the end."""
    started: list[DaemonProcess] = []

    def start(*args: str) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path / "state", list(args), cwd=tmp_path)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.close()


def digits_job(tmp_path: Path, name: str, *settings: str, **kw: Any) -> dict[str, Any]:
    spec = load_spec(DIGITS, [*DIGITS_SETTINGS, f"output.name={name}", *settings])
    return {"kind": "train", "cwd": str(tmp_path), "spec_yaml": dump_spec(spec), **kw}


def outcome(shows: list[dict[str, Any]]) -> str:
    """Each job's state, history and last error lines: what a failed assertion shows."""
    parts = []
    for show in shows:
        err = Path(show["job_dir"]) / "stderr.log"
        tail = err.read_text(errors="replace")[-1500:] if err.is_file() else ""
        parts.append(f"job {show['id']} {show['state']}: {reasons(show)}\n{tail}")
    return "\n".join(parts)


def all_ended(client: JobsClient, ids: list[int]) -> list[dict[str, Any]] | None:
    shows = [client.show(i) for i in ids]
    return shows if all(s["state"] in FINAL for s in shows) else None


def final_events(show: dict[str, Any]) -> list[str]:
    return [e["state"] for e in show["events"] if e["state"] in FINAL]


def reasons(show: dict[str, Any]) -> list[str]:
    return [e["reason"] for e in show["events"]]


def kill_job(state_dir: Path, job_id: int, supervisor_too: bool = False) -> None:
    info = read_json(state_dir / "jobs" / str(job_id) / SUPERVISOR)
    assert info is not None
    os.killpg(info["child_pid"], signal.SIGKILL)
    if supervisor_too:
        os.kill(info["pid"], signal.SIGKILL)


def has_checkpoint(tmp_path: Path, name: str) -> bool:
    return (tmp_path / "runs" / name / "checkpoints" / "last.pt").is_file()


def test_load_of_30_short_jobs(tmp_path: Path) -> None:
    """The load benchmark, small: 30 sleep jobs, 1/2/4-GPU gangs on 4 simulated GPUs."""
    spec = importlib.util.spec_from_file_location("jobs_load", REPO / "benchmarks/jobs_load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run_load(tmp_path, n_jobs=30, gpus=4, seed=1, timeout_s=120)
    assert result["checks"] == {
        "not_ended_exactly_once": [],
        "device_overlaps": {},
        "process_outside_its_reservation": [],
        "partial_gangs": [],
        "waited_longer_than_max_wait": [],
    }
    assert sum(result["gangs"].values()) == 30
    assert result["metrics_scraped"]


def test_kill_9_of_daemon_and_jobs_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, daemons: Callable[..., DaemonProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = daemons("--simulate-gpus", "3", "--cpus", "3", "--grace", "5s")
    state = tmp_path / "state"
    with JobsClient(daemon.url) as client:
        # submitted first, the long job gets core 0, which the "gone" job shares (3 slots on
        # 2 cores): 8 epochs there outlive the other two's first checkpoints by far; those two
        # train 3 (an epoch takes about a second: one epoch could end before it is killed)
        adopted = client.submit(digits_job(tmp_path, "adopted", "train.epochs=8", gpus=1))["id"]
        three = "train.epochs=3"
        retried = client.submit(digits_job(tmp_path, "retried", three, gpus=1, retries=1))["id"]
        gone = client.submit(digits_job(tmp_path, "gone", three, gpus=1))["id"]
        names = {adopted: "adopted", retried: "retried", gone: "gone"}
        wait_for(lambda: has_checkpoint(tmp_path, "retried"), 120, "a checkpoint of 'retried'")
        kill_job(state, retried)  # a crash: retried, resumed from its checkpoint
        wait_for(lambda: has_checkpoint(tmp_path, "gone"), 120, "a checkpoint of 'gone'")
        assert client.show(adopted)["state"] == "running"
    daemon.kill()  # the scheduler dies ...
    kill_job(state, gone, supervisor_too=True)  # ... and so does one job while it is down
    restarted = daemons("--simulate-gpus", "3", "--cpus", "3", "--grace", "5s")
    second = DaemonProcess(state, ["--simulate-gpus", "1"], cwd=tmp_path)
    with pytest.raises(RuntimeError, match="a jobs daemon already runs on this state dir"):
        second.start(timeout_s=60)
    with JobsClient(restarted.url) as client:
        shows = wait_for(lambda: all_ended(client, list(names)), 240, "all jobs to end")
        listed = client.jobs(all=True)
    by_id = {s["id"]: s for s in shows}
    assert [s["state"] for s in shows] == ["succeeded"] * 3, outcome(shows)
    assert all(final_events(s) == ["succeeded"] for s in shows)
    assert (by_id[retried]["retries_used"], by_id[retried]["attempt"]) == (1, 2)
    assert "exit 137; retry 1 of 1" in reasons(by_id[retried])
    assert by_id[adopted]["attempt"] == 1  # never started twice
    assert "adopted by a restarted daemon" in reasons(by_id[adopted])
    assert by_id[gone]["attempt"] == 2 and by_id[gone]["retries_used"] == 0
    assert any("supervisor is gone" in r for r in reasons(by_id[gone]))
    assert not [j for j in listed if j["state"] not in FINAL]
    for name in names.values():
        assert (tmp_path / "runs" / name / "model" / "weights.safetensors").is_file()
    _check_cli_views(restarted.url, capsys, retried)


def _check_cli_views(url: str, capsys: pytest.CaptureFixture[str], retried: int) -> None:
    """``jobs ls``, ``show`` and ``report`` against the live daemon, in-process."""
    capsys.readouterr()
    assert main(["jobs", "ls", "--all", "--json", "--url", url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["state"] for j in listed] == ["succeeded"] * 3
    assert main(["jobs", "show", str(retried), "--url", url]) == 0
    shown = capsys.readouterr().out
    assert f"job {retried}" in shown and "exit 137; retry 1 of 1" in shown
    assert main(["jobs", "report", "--since", "1d", "--by", "user", "--json", "--url", url]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    assert (row["key"], row["jobs"], row["retries"], row["failures"]) == (
        getpass.getuser(),
        3,
        1,
        0,
    )
    assert row["gpu_hours"] > 0


def test_preemption_starts_the_urgent_job_in_time_and_loses_nothing(
    tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    grace_s = 10.0
    daemon = daemons("--simulate-gpus", "2", "--cpus", "2", "--grace", f"{grace_s}s")
    with JobsClient(daemon.url) as client:
        longer = "train.epochs=4"  # see the victim
        reference = client.submit(digits_job(tmp_path, "reference", longer, gpus=1))["id"]
        # started after the reference, the victim is the youngest lower-priority job: the one
        # the policy preempts (two jobs started in one pass would tie)
        wait_for(lambda: client.show(reference)["state"] == "running", 60, "the reference")
        # four epochs, as the reference (their weights are compared): one took about a second
        # once the loop got faster, and a victim that ended before the urgent job came was
        # never preempted (a race the test could lose)
        low = digits_job(tmp_path, "victim", longer, gpus=1, priority="low")
        victim = client.submit(low)["id"]
        wait_for(lambda: has_checkpoint(tmp_path, "victim"), 120, "the victim to train")
        submitted = time.time()
        urgent = client.submit(digits_job(tmp_path, "urgent", gpus=1, priority="high"))["id"]
        shows = wait_for(lambda: all_ended(client, [reference, victim, urgent]), 240, "the end")
    ref, vic, urg = shows
    started = next(e["at"] for e in urg["events"] if e["state"] == "running")
    assert started - submitted <= grace_s + 2
    assert [s["state"] for s in shows] == ["succeeded"] * 3, outcome(shows)
    assert (vic["preemptions"], vic["attempt"], vic["retries_used"]) == (1, 2, 0)
    assert "preempted" in [e["state"] for e in vic["events"]]
    assert final_events(vic) == ["succeeded"]
    assert (ref["preemptions"], ref["attempt"]) == (0, 1)
    weights = [
        tmp_path / "runs" / n / "model" / "weights.safetensors" for n in ("reference", "victim")
    ]
    assert weights[0].read_bytes() == weights[1].read_bytes()


def test_cli_submit_snapshots_the_spec_and_holds_releases_cancels(
    tmp_path: Path,
    daemons: Callable[..., DaemonProcess],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = daemons("--simulate-gpus", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENSORFAB_JOBS_URL", daemon.url)
    spec = tmp_path / "mine.yaml"
    spec.write_text(DIGITS.read_text())
    argv = ["jobs", "submit", str(spec), "--hold", "--gpus", "1", "--set", "train.epochs=2"]
    assert main([*argv, "--priority", "urgent", "--time", "1h30m", "--mem", "1G"]) == 0
    out = capsys.readouterr().out
    job_id = int(out.split()[2])
    assert out == f"submitted job {job_id} (run dir {tmp_path}/runs/digits-lenet)\n"
    spec.write_text(spec.read_text().replace("epochs: 15", "epochs: 99"))  # edited later
    assert main(["jobs", "show", str(job_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["priority"], shown["time_limit_s"]) == ("held", 9, 5400.0)
    assert (shown["mem_bytes"], shown["cwd"]) == (2**30, str(tmp_path))
    snapshot = load_spec(Path(shown["job_dir"]) / "spec.yaml")
    assert snapshot.train.epochs == 2 and snapshot.output.name == "digits-lenet"
    assert main(["jobs", "release", str(job_id)]) == 0
    assert main(["jobs", "cancel", str(job_id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"job {job_id}: queued"
    assert lines[1] in (f"job {job_id}: cancelled", f"job {job_id}: stopping (SIGTERM, then "
                        "SIGKILL after the grace period)")  # fmt: skip
    assert main(["jobs", "submit", "--", "tensorfab", "jobs", "ls"]) == 2
    assert capsys.readouterr().err == "error: args: a job cannot run 'tensorfab jobs'\n"
    daemon.stop()  # SIGTERM: the daemon closes its store and says how it stopped
    assert daemon.process is not None and daemon.process.returncode == 143
    assert not (tmp_path / "state" / "daemon.json").exists()
    log = (tmp_path / "state" / "daemon.log").read_text()
    assert "stopped on SIGTERM; running jobs keep running" in log
