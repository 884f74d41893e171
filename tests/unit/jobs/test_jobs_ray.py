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
