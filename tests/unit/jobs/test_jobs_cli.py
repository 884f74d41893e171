"""``tensorfab jobs``: argument errors as one line (exit 2), durations, sizes, tables; and the
inventory's GPU topology from a fake NVML reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorfab.cli.jobs import jobs_table, parse_bytes, parse_duration, top_frame
from tensorfab.cli.main import main
from tensorfab.errors import TensorfabError
from tensorfab.jobs.agent import node_of
from tensorfab.jobs.inventory import Gpu, Inventory, discover, gpu_distance

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("01:30:00", 5400), ("10:00", 600), ("0.5h", 1800)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "h", "-5m", "0s", ""])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(TensorfabError, match=r"^--time "):
        parse_duration(text)


def test_sizes() -> None:
    assert (parse_bytes("512M"), parse_bytes("4G"), parse_bytes("4GiB")) == (
        512 * 2**20,
        4 * 2**30,
        4 * 2**30,
    )
    assert parse_bytes("1000") == 1000
    with pytest.raises(TensorfabError, match=r"^--mem 'lots': use e.g. 512M, 4G"):
        parse_bytes("lots")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_submit_of_a_bad_spec_names_file_and_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  epoch: 3\n")
    code, err = _run(["jobs", "submit", str(bad), "--url", "http://127.0.0.1:9"], capsys)
    assert (code, err) == (2, f"error: {bad}:3: train.epoch: unknown field")


def test_submit_of_a_binary_file_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    png = tmp_path / "ok28.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    code, err = _run(["jobs", "submit", str(png), "--url", "http://127.0.0.1:9"], capsys)
    assert (code, err) == (
        2,
        f"error: {png}:1: invalid UTF-8 (byte 0x89 at column 1)",
    )


def test_submit_arguments(capsys) -> None:
    spec = str(REPO / "examples" / "digits-lenet.yaml")
    cases = [
        (["jobs", "submit"], "error: give one job spec YAML, or -- tensorfab COMMAND ..."),
        (["jobs", "submit", spec, spec], "error: give one job spec YAML, or -- tensorfab"),
        (["jobs", "submit", "--set", "a=1", "--", "tensorfab", "info"],
         "error: --set: only for a spec, not for a command after --"),
        (["jobs", "submit", "--", "tensorfab"], "error: after -- give a tensorfab command"),
        (["jobs", "submit", spec, "--time", "soon"], "error: --time 'soon': use e.g. 90s"),
    ]  # fmt: skip
    for argv, start in cases:
        code, err = _run(argv, capsys)
        assert code == 2 and err.startswith(start), (argv, err)


def test_no_daemon_is_one_line_saying_how_to_start_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TENSORFAB_JOBS_URL", raising=False)
    code, err = _run(["jobs", "ls", "--state-dir", str(tmp_path)], capsys)
    assert (code, err) == (
        2,
        f"error: no jobs daemon found ({tmp_path}/daemon.json missing); "
        "start it with: tensorfab jobs up",
    )
    monkeypatch.setenv("TENSORFAB_JOBS_URL", "http://127.0.0.1:9")
    code, err = _run(["jobs", "show", "3"], capsys)
    assert (code, err) == (
        2,
        "error: no jobs daemon answers at http://127.0.0.1:9; start it with: tensorfab jobs up",
    )


def test_up_arguments(tmp_path: Path, capsys) -> None:
    state = ["--state-dir", str(tmp_path)]
    for argv, message in [
        (["--simulate-gpus", "-1"], "error: --simulate-gpus -1: must be 0 or more"),
        (["--cpus", "0"], "error: --cpus 0: must be at least 1"),
        (["--port", "70000"], "error: --port 70000: choose a port from 0 to 65535"),
        (["--grace", "later"], "error: --grace 'later': use e.g. 90s"),
        (["--host", "0.0.0.0"], "error: --host 0.0.0.0: without --tokens the daemon is"),
    ]:
        code, err = _run(["jobs", "up", *state, *argv], capsys)
        assert code == 2 and err.startswith(message), (argv, err)
    assert not (tmp_path / "jobs.db").exists()


def test_jobs_without_a_subcommand(capsys) -> None:
    code, err = _run(["jobs"], capsys)
    assert code == 2 and err.startswith("error: jobs: give a subcommand (up, submit, ls,")


def test_tables() -> None:
    row = {
        "id": 7, "state": "running", "user": "alice", "team": "vision", "priority": 7,
        "gpus": 2, "wait_s": 75.0, "run_s": 3700.0, "devices": ["sim0", "sim1"],
        "name": "digits-lenet",
    }  # fmt: skip
    lines = jobs_table([row]).splitlines()
    assert lines[0].split() == ["ID", "STATE", "USER", "TEAM", "PRIO", "GPUS", "WAIT", "RUN",
                                "DEVICES", "NAME"]  # fmt: skip
    assert lines[1].split() == ["7", "running", "alice", "vision", "7", "2", "1m15s", "1h01m",
                                "sim0,sim1", "digits-lenet"]  # fmt: skip
    view = {
        "node": "n1", "running": 1, "queued": 3, "cpu_slots": 4, "cpu_slots_used": 1,
        "devices": [
            {"id": "sim0", "job": 7, "user": "alice", "team": "vision", "name": "simulated GPU",
             "readings": None},
            {"id": "sim1", "job": None, "user": None, "team": None, "name": "simulated GPU",
             "readings": {"utilization_pct": 93}},
        ],
    }  # fmt: skip
    frame = top_frame(view).splitlines()
    assert frame[0] == "n1: 1 running, 3 queued, CPU slots 1/4"
    assert frame[2].split() == ["sim0", "7", "alice", "vision", "-", "simulated", "GPU"]
    assert frame[3].split() == ["sim1", "-", "-", "-", "93%", "simulated", "GPU"]


def test_gpu_distance_from_nvml_topology_levels() -> None:
    gpus = [Gpu(f"GPU-{i}", i, "H100", 80 * 2**30) for i in range(3)]
    # 0 and 1 share a board switch (level 10), 2 sits across the CPU sockets (level 50)
    levels = {(0, 1): 10, (0, 2): 50, (1, 2): 50}
    distance = gpu_distance(gpus, lambda a, b: levels[(a.index, b.index)])
    assert distance == {(0, 1): 1, (1, 0): 1, (0, 2): 5, (2, 0): 5, (1, 2): 5, (2, 1): 5}
    node = node_of(Inventory(gpus, [0, 1], 2**34, distance), cpu_slots=None)
    assert (node.gpus, node.cores, node.gpu_distance) == ((0, 1, 2), (0, 1), distance)
    # one unknown pair: no table at all rather than a misleading partial one
    assert gpu_distance(gpus, lambda a, b: None if b.index == 2 else 10) == {}
    assert gpu_distance(gpus[:1], lambda a, b: 10) == {}


def test_simulated_inventory_has_no_topology() -> None:
    inventory = discover(simulate_gpus=3)
    assert [g.id for g in inventory.gpus] == ["sim0", "sim1", "sim2"]
    assert inventory.simulated and inventory.distance == {}
    assert node_of(inventory, cpu_slots=16).gpu_distance is None
    assert inventory.cores and inventory.memory_bytes > 0


SUBCOMMANDS = ["up", "submit", "ls", "show", "logs", "cancel", "hold", "release", "top", "report"]


@pytest.mark.parametrize("name", [*SUBCOMMANDS, "simulate"])
def test_every_subcommand_help_has_an_example(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["jobs", name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tensorfab jobs {name}")
    assert f"tensorfab jobs {name}" in out.split("example:", 1)[1]


class _FakeLogs:
    """A daemon answering /logs: the job writes two chunks, then ends."""

    def __init__(self) -> None:
        self.chunks = [("epoch 1\n", False), ("", False), ("epoch 2\n", True), ("", True)]
        self.offsets: list[int] = []

    def logs(self, job_id: int, stream: str, offset: int) -> dict:
        self.offsets.append(offset)
        text, ended = self.chunks.pop(0)
        return {"text": text, "offset": offset + len(text), "ended": ended}

    def __enter__(self) -> _FakeLogs:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_logs_follow_reads_on_from_its_offset_until_the_job_ended(monkeypatch, capsys) -> None:
    import tensorfab.cli.jobs as cli_jobs

    fake = _FakeLogs()
    monkeypatch.setattr(cli_jobs, "_client", lambda args: fake)
    monkeypatch.setattr(cli_jobs.time, "sleep", lambda s: None)
    assert main(["jobs", "logs", "4", "-f"]) == 0
    assert capsys.readouterr().out == "epoch 1\nepoch 2\n"
    assert fake.offsets == [0, 8, 8, 16]
