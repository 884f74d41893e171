"""The agent with a fake backend, a fake clock and scripted policy decisions.

What the daemon does with each decision and each way an attempt ends: claim and launch
(devices, pinning, thread counts, argv), preemption -> preempted -> resumed with --resume,
retries, the time limit, SIGKILL after the grace period, cancel, and recovery after a crash.
"""

from __future__ import annotations

import math
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tensorfab.jobs.agent import Agent, AgentConfig
from tensorfab.jobs.backend import GONE, Ended, Gone, Handle, Launch
from tensorfab.jobs.inventory import Gpu, Inventory
from tensorfab.jobs.policy import Cancel, PolicyConfig, Preempt, Start, State, Stop
from tensorfab.jobs.store import NewJob, Store

SPEC = "name: digits-lenet\ndata:\n  format: digits\n"


class FakeBackend:
    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.signals: list[tuple[int, int]] = []
        self.results: dict[int, Ended | Gone] = {}
        self.adoptable: set[int] = set()

    def start(self, launch: Launch) -> Handle:
        self.launches.append(launch)
        return Handle(launch.job_id, launch.attempt, launch.job_dir)

    def signal(self, handle: Handle, signum: int) -> bool:
        self.signals.append((handle.job_id, signum))
        return True

    def poll(self, handle: Handle) -> Ended | Gone | None:
        return self.results.pop(handle.job_id, None)

    def adopt(self, job_id: int, attempt: int, job_dir: Path) -> Handle | None:
        return Handle(job_id, attempt, job_dir) if job_id in self.adoptable else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """The policy's answers, one list per call; records the states it was shown."""

    def __init__(self) -> None:
        self.next: list[Any] = []
        self.seen: list[State] = []

    def __call__(self, state: State, now: float, config: PolicyConfig) -> list[Any]:
        self.seen.append(state)
        actions, self.next = self.next, []
        return actions


INVENTORY = Inventory(
    [Gpu("sim0", 0, "simulated GPU", 2**30, True), Gpu("sim1", 1, "simulated GPU", 2**30, True)],
    cores=[0, 1],
    memory_bytes=2**34,
)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Agent, FakeBackend, Script, Clock]:
    store = Store(tmp_path / "state", mounts="/dev/vda / ext4 rw 0 0\n")
    backend, script, clock = FakeBackend(), Script(), Clock()
    config = AgentConfig(PolicyConfig(grace_s=30.0), cpu_slots=4)
    agent = Agent(store, INVENTORY, backend, config, clock=clock, policy=script)
    yield agent, backend, script, clock
    store.close()


def _train(agent: Agent, tmp_path: Path, **kw: Any) -> int:
    run_dir = tmp_path / "runs" / "digits"
    job = NewJob("alice", "vision", "train", [], str(tmp_path), str(run_dir), SPEC, **kw)
    return agent.store.add(job, agent.clock())


def _start(agent: Agent, script: Script, job_id: int, devices=(1,), cores=(0, 3)) -> None:
    script.next = [Start(job_id, agent.node.name, tuple(devices), tuple(cores))]
    agent.tick()


def test_start_claims_and_launches_with_devices_pinning_and_threads(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path, gpus=1, cpus=2)
    clock.now += 5
    _start(agent, script, job_id)
    row = agent.store.get(job_id)
    assert (row["state"], row["devices"], row["cores"], row["wait_s"]) == (
        "running",
        ["sim1"],
        [0, 3],
        5.0,
    )
    launch = backend.launches[0]
    assert launch.env["CUDA_VISIBLE_DEVICES"] == ""  # simulated: the job runs on the CPU
    assert (launch.env["OMP_NUM_THREADS"], launch.env["MKL_NUM_THREADS"]) == ("2", "2")
    assert launch.env["TENSORFAB_THREADS"] == "2"  # train.threads: auto takes the job's cores
    assert launch.cores == [0, 1]  # slots 0 and 3 of 4 on a 2-core node: cores 0 and 1
    spec = str(launch.job_dir / "spec.yaml")
    assert launch.argv[1:] == ["-m", "tensorfab.cli.main", "train", spec, "--quiet"]
    assert "--resume" not in launch.argv
    assert (launch.job_dir / "spec.yaml").read_text() == SPEC
    assert launch.cwd == str(tmp_path)


def test_the_policy_sees_a_running_jobs_devices_and_remaining_time(parts, tmp_path) -> None:
    agent, _backend, script, clock = parts
    job_id = _train(agent, tmp_path, gpus=1, time_limit_s=100.0)
    agent.store.update(job_id, run_s=40.0)  # ran 40 s before a preemption
    _start(agent, script, job_id)
    clock.now += 1
    agent.tick()
    job = script.seen[-1].jobs[0]
    assert (job.state, job.devices, job.cores, job.preemptible) == ("running", (1,), (0, 3), True)
    assert job.time_limit_s == 60.0  # a resumed job gets what is left, not a new budget


def test_exit_zero_succeeds_and_is_accounted(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path, gpus=1, cpus=2)
    _start(agent, script, job_id)
    backend.results[job_id] = Ended(0, clock.now, clock.now + 36.0)
    clock.now += 40
    agent.tick()
    row = agent.store.get(job_id)
    assert (row["state"], row["exit_code"], row["run_s"]) == ("succeeded", 0, 36.0)
    assert (row["gpu_s"], row["cpu_s"]) == (36.0, 72.0)


def test_preempt_signals_requeues_and_resumes_from_the_checkpoint(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path, gpus=1)
    _start(agent, script, job_id)
    script.next = [Preempt(job_id, "for job 9 (priority 7)")]
    agent.tick()
    assert backend.signals == [(job_id, signal.SIGTERM)]
    assert agent.snapshot(clock.now).stopping == frozenset({job_id})
    checkpoint = tmp_path / "runs" / "digits" / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"state")
    backend.results[job_id] = Ended(143, clock.now, clock.now + 2)
    clock.now += 3
    agent.tick()
    row = agent.store.get(job_id)
    assert (row["state"], row["preemptions"], row["exit_code"]) == ("preempted", 1, 143)
    assert (row["retries_used"], row["queued_at"]) == (0, clock.now)  # not a failure
    _start(agent, script, job_id)
    assert backend.launches[-1].argv[-2:] == ["--resume", "--quiet"]
    assert backend.launches[-1].attempt == 2


def test_sigkill_after_the_grace_period(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path)
    _start(agent, script, job_id)
    script.next = [Stop(job_id, "time limit 60 s")]
    agent.tick()
    clock.now += 29
    agent.tick()
    assert backend.signals == [(job_id, signal.SIGTERM)]
    clock.now += 2
    agent.tick()
    assert backend.signals[-1] == (job_id, signal.SIGKILL)
    backend.results[job_id] = Ended(137, clock.now - 1, clock.now)
    agent.tick()
    row = agent.store.get(job_id)
    assert (row["state"], agent.store.events(job_id)[-1]["reason"]) == ("failed", "time limit")


def test_a_crash_is_retried_then_fails(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path, retries=1)
    _start(agent, script, job_id)
    backend.results[job_id] = Ended(137, clock.now, clock.now + 1)
    agent.tick()
    row = agent.store.get(job_id)
    assert (row["state"], row["retries_used"]) == ("queued", 1)
    assert agent.store.events(job_id)[-1]["reason"] == "exit 137; retry 1 of 1"
    _start(agent, script, job_id)
    backend.results[job_id] = Ended(1, clock.now, clock.now + 1)
    agent.tick()
    assert agent.store.get(job_id)["state"] == "failed"
    assert agent.store.events(job_id)[-1]["reason"] == "exit 1"


def test_a_rerun_without_checkpoint_clears_its_own_run_dir(parts, tmp_path) -> None:
    agent, backend, script, _clock = parts
    job_id = _train(agent, tmp_path, retries=1)
    _start(agent, script, job_id)
    run_dir = tmp_path / "runs" / "digits"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text(SPEC)
    backend.results[job_id] = Ended(1, 0.0, 1.0)
    agent.tick()
    _start(agent, script, job_id)
    assert not run_dir.exists()  # the engine would refuse an existing dir without --resume
    assert "--resume" not in backend.launches[-1].argv


def test_cancel_marks_of_running_jobs_end_cancelled(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    job_id = _train(agent, tmp_path)
    _start(agent, script, job_id)
    agent.store.update(job_id, stop_reason="cancel")
    agent.tick()
    assert backend.signals == [(job_id, signal.SIGTERM)]
    backend.results[job_id] = Ended(143, clock.now, clock.now + 1)
    agent.tick()
    assert agent.store.get(job_id)["state"] == "cancelled"


def test_policy_cancel_ends_a_waiting_job(parts, tmp_path) -> None:
    agent, _backend, script, _clock = parts
    job_id = _train(agent, tmp_path, after=[99])
    script.next = [Cancel(job_id, "dependency 99 is unknown")]
    agent.tick()
    row = agent.store.get(job_id)
    assert (row["state"], agent.store.events(job_id)[-1]["reason"]) == (
        "cancelled",
        "dependency 99 is unknown",
    )


def test_recover_adopts_live_jobs_and_requeues_gone_ones(parts, tmp_path) -> None:
    agent, backend, script, clock = parts
    live = _train(agent, tmp_path)
    gone = _train(agent, tmp_path)
    _start(agent, script, live, devices=(0,), cores=(0,))
    _start(agent, script, gone, devices=(1,), cores=(1,))
    # a new daemon over the same store: the first job's supervisor lives on, the other's not
    fresh = Agent(agent.store, INVENTORY, backend, agent.config, clock=clock, policy=script)
    backend.adoptable = {live}
    fresh.recover()
    assert set(fresh.handles) == {live}
    assert agent.store.get(live)["state"] == "running"
    assert agent.store.events(live)[-1]["reason"] == "adopted by a restarted daemon"
    row = agent.store.get(gone)
    assert (row["state"], row["retries_used"]) == ("queued", 0)
    assert "supervisor is gone" in agent.store.events(gone)[-1]["reason"]
    backend.results[live] = GONE
    fresh.tick()
    assert agent.store.get(live)["state"] == "queued"


def test_usage_decays_and_charges_running_gpus(parts, tmp_path) -> None:
    agent, _backend, script, clock = parts
    job_id = _train(agent, tmp_path, gpus=2)
    _start(agent, script, job_id, devices=(0, 1))
    agent.usage = {"vision": 0.0}
    agent.last_usage_at = clock.now
    clock.now += 10
    agent.tick()
    assert agent.usage["vision"] == pytest.approx(20.0, rel=1e-4)  # 2 GPUs x 10 s
    assert math.isinf(script.seen[-1].jobs[0].time_limit_s)


def _real_policy_agent(
    tmp_path: Path, inventory: Inventory = INVENTORY
) -> tuple[Agent, FakeBackend]:
    store = Store(tmp_path / "real", mounts="/dev/vda / ext4 rw 0 0\n")
    backend = FakeBackend()
    config = AgentConfig(PolicyConfig(grace_s=30.0), cpu_slots=4)
    return Agent(store, inventory, backend, config, clock=Clock()), backend


def _command(agent: Agent, tmp_path: Path, **kw: Any) -> int:
    job = NewJob("alice", "vision", "command", ["info"], str(tmp_path), **kw)
    return agent.store.add(job, agent.clock())


def test_real_policy_dependencies_gangs_and_preemption(tmp_path) -> None:
    agent, backend = _real_policy_agent(tmp_path)
    first = _train(agent, tmp_path, gpus=2, priority=2)
    after = _command(agent, tmp_path, gpus=1, after=[first])
    agent.tick()
    assert [launch.job_id for launch in backend.launches] == [first]  # `after` waits
    assert agent.store.get(first)["devices"] == ["sim0", "sim1"]  # the whole gang at once
    urgent = _command(agent, tmp_path, gpus=1, priority=9)
    agent.tick()
    # the low-priority training job is preemptible; the urgent one waits for its GPUs
    assert backend.signals == [(first, signal.SIGTERM)]
    assert agent.store.get(urgent)["state"] == "queued"
    backend.results[first] = Ended(143, 0.0, 1.0)
    agent.tick()
    agent.tick()
    assert agent.store.get(first)["state"] == "preempted"
    assert agent.store.get(urgent)["state"] == "running"
    assert agent.store.get(after)["state"] == "queued"  # its dependency has not succeeded
    agent.store.close()


def test_command_jobs_are_never_preempted(tmp_path) -> None:
    agent, backend = _real_policy_agent(tmp_path)
    low = _command(agent, tmp_path, gpus=2, priority=0)
    agent.tick()
    _command(agent, tmp_path, gpus=2, priority=9)
    agent.tick()
    assert backend.signals == [] and agent.store.get(low)["state"] == "running"
    agent.store.close()


def test_real_gpus_get_uuids_and_energy_from_nvml(tmp_path, monkeypatch) -> None:
    import tensorfab.hardware as hardware

    gpus = [Gpu("GPU-aaa", 0, "H100", 80 * 2**30), Gpu("GPU-bbb", 1, "H100", 80 * 2**30)]
    readings = {"aaa": 1_000_000, "bbb": 5_000_000}  # mJ since the driver loaded
    monkeypatch.setattr(hardware, "energy_mj", lambda index, uuid: readings[uuid])
    agent, backend = _real_policy_agent(tmp_path, Inventory(gpus, [0, 1], 2**34))
    job_id = _train(agent, tmp_path, gpus=2, cpus=2)
    agent.tick()
    launch = backend.launches[0]
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "GPU-aaa,GPU-bbb"
    assert "--nproc_per_node=2" in launch.argv  # torchrun, one process per GPU ...
    assert launch.env["OMP_NUM_THREADS"] == "1"  # ... sharing the job's 2 cores
    readings.update(aaa=1_600_000, bbb=5_400_000)  # 600 J + 400 J during the job
    backend.results[job_id] = Ended(0, 0.0, 10.0)
    agent.tick()
    assert agent.store.get(job_id)["energy_j"] == pytest.approx(1000.0)
    agent.store.close()


def test_a_corrupt_row_fails_its_job_once_and_the_others_run(tmp_path, capsys) -> None:
    agent, backend = _real_policy_agent(tmp_path)
    bad, bogus = _command(agent, tmp_path), _command(agent, tmp_path)
    good = _command(agent, tmp_path)
    with sqlite3.connect(agent.store.path) as db:
        db.execute("UPDATE jobs SET after=? WHERE id=?", ('[99999, "x"]', bad))
        db.execute("UPDATE jobs SET state='bogus' WHERE id=?", (bogus,))
    agent.recover()  # a restarted daemon reads every row
    agent.tick()
    agent.tick()
    assert [launch.job_id for launch in backend.launches] == [good]
    why = f"jobs.db row {bad}: after is not a list of job ids"
    assert agent.store.get(bad)["state"] == "failed"
    assert agent.store.events(bad)[-1]["reason"] == why
    assert agent.store.get(bogus)["state"] == "failed"  # the row is kept, its state repaired
    assert agent.store.events(bogus)[-1]["reason"].startswith(
        f"jobs.db row {bogus}: state is not one of"
    )
    logged = capsys.readouterr().err.splitlines()
    assert logged.count(f"tensorfab jobs: job {bad} failed: {why}") == 1 and len(logged) == 2
    agent.store.close()
