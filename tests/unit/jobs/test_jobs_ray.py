"""The Ray commands without Ray: one line naming the extra (exit 2); the address rules; the
cluster as the policy sees it, from a fake ``cluster_resources``. (Ray itself runs in
tests/integration/ray, inside a loopback-only network namespace.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tensorfab.cli.main import main
from tensorfab.engine.raycluster import import_ray, resolve_address
from tensorfab.errors import TensorfabError
from tensorfab.jobs.ray_backend import actor_name, ray_inventory

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


def test_actor_names_are_per_job_and_attempt() -> None:
    assert actor_name(17, 2) == "tensorfab-job-17-a2"
    assert actor_name(17, 1) != actor_name(17, 2)


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

    def wait(self, refs: list[Ref], timeout: float) -> tuple[list[Ref], list[Ref]]:
        return [r for r in refs if r.ready], [r for r in refs if not r.ready]

    def get(self, ref: Ref, timeout: float | None = None) -> object:
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value

    def kill(self, actor: object, no_restart: bool = True) -> None:
        self.killed.append(actor)


def _backend() -> tuple[object, FakeCluster]:
    from tensorfab.jobs.backend import LocalBackend
    from tensorfab.jobs.ray_backend import RayBackend

    backend = RayBackend.__new__(RayBackend)  # no ray.init: the fake stands in for Ray
    cluster = FakeCluster()
    backend.ray, backend.local = cluster, LocalBackend()
    return backend, cluster


def test_an_ended_attempt_is_read_from_its_actor_which_is_then_released(tmp_path: Path) -> None:
    from tensorfab.jobs.backend import Ended, Handle
    from tensorfab.jobs.ray_backend import RayJob

    backend, cluster = _backend()
    running = RayJob("actor-1", Ref(False), None, Ref(True))
    handle = Handle(1, 1, tmp_path, running)
    assert backend.poll(handle) is None and cluster.killed == []
    outcome = {"exit_code": 143, "started_at": 1.0, "ended_at": 2.5}
    handle.process = RayJob("actor-1", Ref(True, outcome), None, Ref(True))
    assert backend.poll(handle) == Ended(143, 1.0, 2.5)
    assert cluster.killed == ["actor-1"]  # a detached actor lives until killed


def test_a_stop_of_an_attempt_ray_has_not_placed_ends_its_actor(tmp_path: Path) -> None:
    from tensorfab.jobs.backend import GONE, Handle
    from tensorfab.jobs.ray_backend import RayJob

    backend, cluster = _backend()
    pending = RayJob("actor-2", Ref(False), None, Ref(False))  # waiting for resources
    handle = Handle(2, 1, tmp_path, pending)
    assert backend.signal(handle, 15) is True  # the stop is done: nothing ran
    assert cluster.killed == ["actor-2"]
    # the killed actor's result raises; the job folder has no exit status: gone, not ended
    handle.process = RayJob("actor-2", Ref(True, ActorDied("killed")), None, Ref(False))
    assert backend.poll(handle) is GONE
    assert handle.process is None  # read from the job folder from now on
