"""The Ray commands without Ray: one line naming the extra (exit 2); the address rules; the
cluster as the policy sees it, from a fake ``cluster_resources``. (Ray itself runs in
tests/integration/ray, inside a loopback-only network namespace.)"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest

from tensorfab.cli.main import main
from tensorfab.engine.raycluster import import_ray, resolve_address
from tensorfab.errors import TensorfabError
from tensorfab.jobs.backend import GONE, Ended, Handle, LocalBackend
from tensorfab.jobs.ray_backend import (
    RayJob,
    Runner,
    RunnerPool,
    combine,
    gang_name,
    gang_nodes,
    ray_inventory,
)
from tensorfab.jobs.ray_runner import folder_problem, gang_argv

INSTALL = "pip install 'tensorfab[ray]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` raises ImportError


def test_without_ray_the_import_names_the_extra(no_ray: None) -> None:
    with pytest.raises(
        TensorfabError, match=r"^Ray is not installed: pip install 'tensorfab\[ray\]'$"
    ):
        import_ray()


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "up", "--backend", "ray", "--address", "127.0.0.1:6379"],
        ["jobs", "up", "--backend", "ray"],  # the missing extra is said before the address
        ["train", "--ray", "local", "--workers", "2"],
    ],
)
def test_without_ray_each_ray_command_says_how_to_install_it(
    argv: list[str],
    no_ray: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [*argv, "--state-dir", str(tmp_path)] if argv[0] == "jobs" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: Ray is not installed: {INSTALL}"]


def test_the_address_is_the_flag_then_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_address("127.0.0.1:6379") == "127.0.0.1:6379"
    assert resolve_address(None) == "10.0.0.5:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(TensorfabError, match=r"^--address: which Ray\? give local, HOST:PORT"):
        resolve_address(None)


class FakeRay:
    def __init__(self, resources: dict[str, float]) -> None:
        self.resources = resources

    def cluster_resources(self) -> dict[str, float]:
        return self.resources


def test_the_cluster_is_one_node_of_its_gpus_and_cpus() -> None:
    inventory, cpus = ray_inventory(FakeRay({"GPU": 8.0, "CPU": 16.0, "memory": 2.0**34}), None)
    assert [g.id for g in inventory.gpus] == [f"ray{i}" for i in range(8)]
    assert [g.index for g in inventory.gpus] == list(range(8))
    assert inventory.simulated  # never read through this machine's NVML: they may be elsewhere
    assert (cpus, inventory.cores, inventory.memory_bytes) == (16, list(range(16)), 2**34)
    # --cpus overrides the slots; a cluster without GPUs has none
    inventory, cpus = ray_inventory(FakeRay({"CPU": 4.0}), 2)
    assert (inventory.gpus, cpus) == ([], 2)


def test_a_job_spans_the_fewest_nodes_that_share_its_gpus_evenly() -> None:
    assert [gang_nodes(g, 4) for g in (1, 2, 4)] == [1, 1, 1]  # one node holds it
    assert gang_nodes(8, 4) == 2  # 4 + 4
    assert gang_nodes(6, 4) == 2  # 3 + 3
    assert gang_nodes(12, 4) == 3
    assert gang_nodes(5, 4) == 5  # 5 is prime: one GPU on each of five nodes
    assert gang_name(17, 2) == "tensorfab-job-17-a2" != gang_name(17, 1)


TORCHRUN = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]


def test_a_gang_node_runs_torchrun_with_its_rank_and_the_first_nodes_rendezvous() -> None:
    gang = {"nodes": 2, "rank": 1, "endpoint": "10.0.0.5:29500", "id": "g", "address": "10.0.0.6"}
    assert gang_argv([*TORCHRUN, "-m", "tensorfab.cli.main", "train"], gang) == [
        "python",
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node-rank=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.5:29500",
        "--rdzv-id=g",
        "--local-addr=10.0.0.6",
        "--nproc_per_node=4",  # 8 GPUs over 2 nodes: 4 processes on each
        "-m",
        "tensorfab.cli.main",
        "train",
    ]
    sleep = ["python", "-c", "import time; time.sleep(1)"]
    assert gang_argv(sleep, gang) == sleep  # not torchrun's: as it is


def test_a_runner_that_does_not_see_the_job_folder_says_so(tmp_path: Path) -> None:
    record = {"job_dir": str(tmp_path / "7"), "token": "abc"}
    expected = (
        f"Ray node 10.0.0.6 does not see the job folder {tmp_path / '7'}: the jobs folder "
        "(jobs up --jobs-dir) must be a path every Ray node sees (a shared filesystem)"
    )
    assert folder_problem(record, "10.0.0.6") == expected  # no folder at all
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "ray.json").write_text(json.dumps({"token": "older"}))
    assert folder_problem(record, "10.0.0.6") == expected  # another attempt's folder
    (tmp_path / "7" / "ray.json").write_text(json.dumps({"token": "abc"}))
    assert folder_problem(record, "10.0.0.6") is None


def test_a_gangs_outcome_is_its_first_failure_its_earliest_start_and_latest_end() -> None:
    ok = {"exit_code": 0, "started_at": 2.0, "ended_at": 9.0}
    killed = {"exit_code": 143, "started_at": 1.0, "ended_at": 5.0}
    assert combine([ok, killed]) == {"exit_code": 143, "started_at": 1.0, "ended_at": 9.0}
    assert combine([ok]) == ok
    assert combine([ok, {}]) == {}  # a node's supervisor died: read the job folder


# -- the backend's bookkeeping against a fake Ray (no processes) ---------------------------


class Ref:
    def __init__(self, ready: bool, value: object = None) -> None:
        self.ready, self.value = ready, value


class ActorDied(Exception):
    pass


class FakeCluster:
    """What RayBackend calls on ``ray``: wait, get, kill, and the exception types."""

    class exceptions:
        RayError = ActorDied
        RayActorError = ActorDied
        GetTimeoutError = TimeoutError

    def __init__(self) -> None:
        self.killed: list[object] = []
        self.actors: dict[str, object] = {}
        self.util = types.SimpleNamespace(
            remove_placement_group=self.killed.append, get_placement_group=lambda n: f"pg-{n}"
        )

    def get_actor(self, name: str, namespace: str) -> object:
        if name not in self.actors:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return self.actors[name]

    def wait(
        self, refs: list[Ref], num_returns: int = 1, timeout: float = 0
    ) -> tuple[list[Ref], list[Ref]]:
        return [r for r in refs if r.ready], [r for r in refs if not r.ready]

    def get(self, ref: Ref, timeout: float | None = None) -> object:
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value

    def kill(self, actor: object, no_restart: bool = True) -> None:
        self.killed.append(actor)


def _backend(total: tuple[int, int] = (8, 16)) -> tuple[object, FakeCluster]:
    from tensorfab.jobs.ray_backend import RayBackend

    backend = RayBackend.__new__(RayBackend)  # no ray.init: the fake stands in for Ray
    cluster = FakeCluster()
    backend.ray, backend.local = cluster, LocalBackend()
    backend.pool = RunnerPool(cluster, total)
    backend.nodes = 1
    return backend, cluster


def _runner(name: str, gpus: int, idle_since: float = 0.0) -> Runner:
    return Runner(f"actor-{name}", name, (gpus, 1), idle_since)


def test_an_ended_attempt_leaves_its_runner_warm_for_the_next_job_of_its_shape(
    tmp_path: Path,
) -> None:
    backend, cluster = _backend()
    runner = _runner("r1", 2)
    backend.pool.busy["r1"] = runner
    handle = Handle(1, 1, tmp_path, RayJob([runner], [Ref(False)], [Ref(True)]))
    assert backend.poll(handle) is None
    outcome = {"exit_code": 143, "started_at": 1.0, "ended_at": 2.5}
    handle.process = RayJob([runner], [Ref(True, outcome)], [Ref(True)])
    assert backend.poll(handle) == Ended(143, 1.0, 2.5)
    assert cluster.killed == [] and backend.pool.idle == [runner]  # not ended: kept warm
    assert backend.pool.take((1, 1)) is None  # another shape does not get it
    assert backend.pool.take((2, 1)) is runner and backend.pool.busy == {"r1": runner}


def test_idle_runners_of_other_shapes_end_oldest_first_when_their_resources_are_wanted() -> None:
    _, cluster = _backend()
    pool = RunnerPool(cluster, (8, 16))
    old, new, busy = _runner("old", 4, 1.0), _runner("new", 2, 5.0), _runner("busy", 1)
    pool.idle, pool.busy = [new, old], {"busy": busy}
    pool.make_room((1, 1))  # 4 + 2 + 1 held of 8: one more fits beside them
    assert cluster.killed == []
    pool.make_room((2, 1))  # 9 > 8: the oldest idle runner (4 GPUs) goes, and that suffices
    assert cluster.killed == ["actor-old"] and pool.idle == [new]
    pool.reap(now=5.0 + 31.0)  # idle longer than KEEP_IDLE_S (30 s): ended
    assert cluster.killed == ["actor-old", "actor-new"] and pool.idle == []
    assert pool.busy == {"busy": busy}


def test_a_gang_ends_its_runners_with_the_attempt(tmp_path: Path) -> None:
    backend, cluster = _backend()
    runners = [_runner("n0", 4), _runner("n1", 4)]
    ok = {"exit_code": 0, "started_at": 1.0, "ended_at": 2.0}
    job = RayJob(runners, [Ref(True, ok), Ref(False)], [Ref(True), Ref(True)], "group-3")
    handle = Handle(3, 1, tmp_path, job)
    assert backend.poll(handle) is None  # one node still runs: the gang has not ended
    job.results[1] = Ref(True, {**ok, "exit_code": 1})
    assert backend.poll(handle) == Ended(1, 1.0, 2.0)
    # both runners ended and the placement group removed: nothing of the gang is kept
    assert cluster.killed == ["actor-n0", "actor-n1", "group-3"]


def test_a_runner_on_a_node_without_the_job_folder_fails_the_attempt_with_that_line(
    tmp_path: Path,
) -> None:
    backend, _ = _backend()
    runner = _runner("r", 1)
    backend.pool.busy["r"] = runner
    problem = {"error": "Ray node 10.0.0.6 does not see the job folder /x/7: ..."}
    handle = Handle(7, 1, tmp_path, RayJob([runner], [Ref(True, problem)], [Ref(True)]))
    ended = backend.poll(handle)
    assert isinstance(ended, Ended) and ended.exit_code == 2
    lines = (tmp_path / "stderr.log").read_text().splitlines()
    assert lines == ["error: Ray node 10.0.0.6 does not see the job folder /x/7: ..."]


def test_a_stop_of_an_attempt_ray_has_not_placed_ends_its_runner(tmp_path: Path) -> None:
    backend, cluster = _backend()
    runner = _runner("r2", 1)
    backend.pool.busy["r2"] = runner
    pending = RayJob([runner], [Ref(False)], [Ref(False)])  # waiting for resources
    handle = Handle(2, 1, tmp_path, pending)
    assert backend.signal(handle, 15) is True  # the stop is done: nothing ran
    assert cluster.killed == ["actor-r2"] and backend.pool.busy == {}
    # the killed runner's result raises; the job folder has no exit status: gone, not ended
    handle.process = RayJob([runner], [Ref(True, ActorDied("killed"))], [Ref(False)])
    assert backend.poll(handle) is GONE
    assert handle.process is None  # read from the job folder from now on


def test_job_folders_go_to_the_jobs_dir_apart_from_the_state_dir(tmp_path: Path) -> None:
    from tensorfab.jobs.agent import job_dir
    from tensorfab.jobs.store import Store

    apart = Store(tmp_path / "state", jobs_dir=tmp_path / "shared" / "jobs")
    default = Store(tmp_path / "other")
    try:
        assert job_dir(apart, 3) == tmp_path / "shared" / "jobs" / "3"
        assert job_dir(default, 3) == tmp_path / "other" / "jobs" / "3"  # as before
    finally:
        apart.close()
        default.close()


def test_a_jobs_dir_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "jobs"
    assert main(["jobs", "up", "--state-dir", str(tmp_path / "s"), "--jobs-dir", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --jobs-dir {bad}: cannot create it (Not a directory)"]


def test_idle_runners_end_when_a_job_waits_long_for_a_node_on_a_cluster_of_several(
    tmp_path: Path,
) -> None:
    backend, cluster = _backend()
    idle = _runner("idle", 2, idle_since=time.time())  # idle just now: not reaped for age
    backend.pool.idle = [idle]
    unplaced = RayJob([_runner("new", 4)], [Ref(False)], [Ref(False)], started=0.0)
    assert backend.poll(Handle(5, 1, tmp_path, unplaced)) is None
    assert cluster.killed == []  # one node: the pool's count is exact, the runner is starting
    backend.nodes = 2
    starting = RayJob([_runner("new", 4)], [Ref(False)], [Ref(False)])  # just started
    assert backend.poll(Handle(5, 1, tmp_path, starting)) is None and cluster.killed == []
    assert backend.poll(Handle(5, 1, tmp_path, unplaced)) is None  # waited > 10 s
    assert cluster.killed == ["actor-idle"] and backend.pool.idle == []


class FakeRunnerActor:
    """A runner as a restarted daemon finds it: its state, and the result it will give."""

    def __init__(self, shape: list[int], current: list[int] | None) -> None:
        self.state = types.SimpleNamespace(
            remote=lambda: Ref(True, {"shape": shape, "current": current})
        )
        self.result = types.SimpleNamespace(remote=lambda job, attempt: Ref(False, (job, attempt)))


def test_a_restarted_daemon_adopts_the_runners_its_job_folder_names(tmp_path: Path) -> None:
    backend, cluster = _backend()
    cluster.actors = {"r1": FakeRunnerActor([2, 1], [4, 2])}
    (tmp_path / "ray.json").write_text(json.dumps({"attempt": 2, "runners": ["r1"]}))
    handle = backend.adopt(4, 2, tmp_path)
    job = handle.process
    assert [(r.name, r.shape) for r in job.runners] == [("r1", (2, 1))]
    assert job.results[0].value == (4, 2)  # the result of that attempt, asked of the runner
    assert list(backend.pool.busy) == ["r1"] and backend.poll(handle) is None  # still runs
    # a gang: its runners and placement group, which end with the attempt (not pooled)
    cluster.actors.update(g0=FakeRunnerActor([4, 1], [5, 1]), g1=FakeRunnerActor([4, 1], [5, 1]))
    gang_dir = tmp_path / "5"
    gang_dir.mkdir()
    ray_file = {"attempt": 1, "runners": ["g0", "g1"], "group": "tensorfab-job-5-a1"}
    (gang_dir / "ray.json").write_text(json.dumps(ray_file))
    gang = backend.adopt(5, 1, gang_dir).process
    assert [r.name for r in gang.runners] == ["g0", "g1"] and gang.group == "pg-tensorfab-job-5-a1"
    assert list(backend.pool.busy) == ["r1"]


def test_an_attempt_whose_runner_is_gone_is_adopted_from_its_folder_or_not_at_all(
    tmp_path: Path,
) -> None:
    backend, _ = _backend()
    (tmp_path / "ray.json").write_text(json.dumps({"attempt": 3, "runners": ["gone"]}))
    assert backend.adopt(4, 3, tmp_path) is None  # no runner, no exit status, no supervisor
    (tmp_path / "exit.json").write_text(
        json.dumps({"attempt": 3, "exit_code": 0, "started_at": 1.0, "ended_at": 2.0})
    )
    handle = backend.adopt(4, 3, tmp_path)  # it ended while no daemon ran: read its folder
    assert handle is not None and handle.process is None
    assert backend.poll(handle) == Ended(0, 1.0, 2.0)
