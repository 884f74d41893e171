"""The daemon's API in-process (no processes started): submit checks, auth, actions, logs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tensorfab.auth import Identity, TokenTable, hash_token, load_tokens
from tensorfab.jobs.agent import Agent, AgentConfig
from tensorfab.jobs.api import ApiOptions, create_app
from tensorfab.jobs.backend import LocalBackend
from tensorfab.jobs.inventory import Gpu, Inventory
from tensorfab.jobs.policy import PolicyConfig
from tensorfab.jobs.store import Store
from tensorfab.spec import dump_spec, load_spec

REPO = Path(__file__).resolve().parents[3]
INVENTORY = Inventory([Gpu("sim0", 0, "simulated GPU", 2**30, True)], [0, 1], 2**34)
TOKENS = TokenTable(
    [
        (hash_token("a-token"), Identity("alice", ("vision", "nlp"))),
        (hash_token("b-token"), Identity("bob", ("speech",))),
    ]
)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    store = Store(tmp_path / "state", mounts="/dev/vda / ext4 rw 0 0\n")
    yield Agent(store, INVENTORY, LocalBackend(), AgentConfig(PolicyConfig()))
    store.close()


def _client(agent: Agent, tokens: TokenTable | None = None, token: str | None = None) -> Any:
    app = create_app(agent, ApiOptions(tokens, "local-user", allow_test_jobs=False))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers)


def _train_body(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    spec = load_spec(REPO / "examples" / "digits-lenet.yaml", ["train.epochs=1"])
    return {"kind": "train", "cwd": str(tmp_path), "spec_yaml": dump_spec(spec), **kw}


def test_submit_snapshots_the_spec_with_an_absolute_run_dir(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    answer = client.post("/jobs", json=_train_body(tmp_path, gpus=1, priority="high"))
    assert answer.status_code == 201
    job_id = answer.json()["id"]
    assert answer.json()["run_dir"] == str(tmp_path / "runs" / "digits-lenet")
    saved = load_spec(agent.store.state_dir / "jobs" / str(job_id) / "spec.yaml")
    assert (saved.output.runs_dir, saved.output.name) == (str(tmp_path / "runs"), "digits-lenet")
    assert saved.train.epochs == 1
    row = agent.store.get(job_id)
    assert (row["user"], row["team"], row["priority"], row["kind"]) == (
        "local-user",
        "default",
        7,
        "train",
    )
    shown = client.get(f"/jobs/{job_id}").json()
    assert shown["state"] == "queued" and shown["events"][0]["state"] == "queued"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": 2}, "this node cannot run the job: asks for 2 GPUs, the cluster has 1"),
        ({"priority": "asap"}, "priority 'asap': use low|normal|high|urgent or a number 0-9"),
        ({"cpus": 0}, "cpus 0: must be at least 1"),
        ({"team": "vision"}, "team 'vision': local-user may charge only default"),
        ({"colour": "red"}, "request: colour: unknown field"),
        ({"gpus": "two"}, "request: gpus: Input should be a valid integer"),
        ({"cwd": "relative"}, "cwd 'relative': must be an absolute path"),
        ({"kind": "sleep", "sleep_s": 1}, "kind 'sleep': only a daemon started with --test-jobs"),
        ({"spec_yaml": "train:\n  epoch: 3\n"}, "request spec_yaml: train.epoch: unknown field"),
    ],
)
def test_submit_refusals_name_the_field(agent: Agent, tmp_path, change, message) -> None:
    answer = _client(agent).post("/jobs", json={**_train_body(tmp_path), **change})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(message)
    assert agent.store.jobs() == []


def test_a_command_job_must_be_a_tensorfab_command(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    body = {"kind": "command", "cwd": str(tmp_path)}
    assert client.post("/jobs", json={**body, "args": ["rm -rf /"]}).json()["error"] == (
        "args: give a tensorfab command, e.g. -- tensorfab export runs/x"
    )
    assert client.post("/jobs", json={**body, "args": ["jobs", "ls"]}).json()["error"] == (
        "args: a job cannot run 'tensorfab jobs'"
    )
    ok = client.post("/jobs", json={**body, "args": ["export", "runs/x", "--repo", "r"]})
    assert agent.store.get(ok.json()["id"])["argv"] == ["export", "runs/x", "--repo", "r"]


def test_a_run_dir_is_never_shared_or_reused(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    first = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    again = client.post("/jobs", json=_train_body(tmp_path)).json()["error"]
    assert again == f"{tmp_path}/runs/digits-lenet: job {first} already writes this run directory"
    (tmp_path / "old").mkdir()
    taken = client.post("/jobs", json=_train_body(tmp_path, run_dir="old")).json()["error"]
    assert taken.startswith(f"{tmp_path}/old: run directory already exists;")


def test_tokens_decide_user_and_teams(agent: Agent, tmp_path) -> None:
    assert _client(agent, TOKENS).get("/jobs").status_code == 401
    assert _client(agent, TOKENS, "wrong").get("/jobs").status_code == 401
    assert _client(agent, TOKENS).get("/health").json()["ok"] is True
    alice = _client(agent, TOKENS, "a-token")
    job_id = alice.post("/jobs", json=_train_body(tmp_path, team="nlp")).json()["id"]
    assert (agent.store.get(job_id)["user"], agent.store.get(job_id)["team"]) == ("alice", "nlp")
    refused = alice.post("/jobs", json=_train_body(tmp_path, team="speech", run_dir="x"))
    assert refused.json()["error"] == "team 'speech': alice may charge only vision, nlp"
    bob = _client(agent, TOKENS, "b-token")
    answer = bob.post(f"/jobs/{job_id}/cancel")
    assert (answer.status_code, answer.json()["error"]) == (
        403,
        f"job {job_id}: belongs to alice, not bob",
    )


def test_hold_release_cancel(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    assert client.post(f"/jobs/{job_id}/hold").json() == {"id": job_id, "state": "held"}
    assert client.post(f"/jobs/{job_id}/hold").json()["error"] == (
        f"job {job_id}: is held; cannot hold it"
    )
    assert client.post(f"/jobs/{job_id}/release").json()["state"] == "queued"
    assert client.post(f"/jobs/{job_id}/cancel").json()["state"] == "cancelled"
    assert client.get("/jobs").json() == []  # ended jobs only with ?all=true
    assert [j["state"] for j in client.get("/jobs", params={"all": "true"}).json()] == ["cancelled"]
    assert client.post("/jobs/99/cancel").status_code == 404
    assert b"tensorfab_jobs_ended_total" in client.get("/metrics").content


def test_cancel_of_a_running_job_marks_it_for_the_agent(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    agent.store.claim(job_id, ["sim0"], [0], 1.0)
    answer = client.post(f"/jobs/{job_id}/cancel").json()
    assert answer == {"id": job_id, "state": "running", "stopping": True}
    assert agent.store.get(job_id)["stop_reason"] == "cancel"


def test_logs_are_read_from_an_offset(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    log = agent.store.state_dir / "jobs" / str(job_id) / "stdout.log"
    log.write_text("epoch 1\nepoch 2\n")
    first = client.get(f"/jobs/{job_id}/logs").json()
    assert first == {"text": "epoch 1\nepoch 2\n", "offset": 16, "ended": False}
    assert client.get(f"/jobs/{job_id}/logs", params={"offset": 8}).json()["text"] == "epoch 2\n"
    assert client.get(f"/jobs/{job_id}/logs", params={"stream": "x"}).status_code == 400


def test_node_view_shows_who_runs_where(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path, gpus=1)).json()["id"]
    agent.store.claim(job_id, ["sim0"], [0], 1.0)
    view = client.get("/node").json()
    assert (view["running"], view["queued"], view["cpu_slots"]) == (1, 0, 2)
    assert view["devices"][0] | {"readings": None} == {
        "id": "sim0",
        "index": 0,
        "name": "simulated GPU",
        "memory_bytes": 2**30,
        "simulated": True,
        "job": job_id,
        "user": "local-user",
        "team": "default",
        "readings": None,
    }


def test_the_example_tokens_file_loads() -> None:
    table = load_tokens(REPO / "examples" / "jobs" / "tokens.yaml")
    assert table.identify("alice-secret-token") == Identity("alice", ("vision", "nlp"))
    assert table.identify("carol-secret-token") == Identity("carol", ("speech",))
    assert table.identify("alice-secret-token ") is None


def test_hostile_requests_are_4xx_with_the_error_body(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    deep = client.post("/jobs", content='{"a":' * 100_000)
    assert (deep.status_code, deep.json()) == (400, {"error": "request: body is nested too deep"})
    huge = client.get("/jobs/99999999999999999999999999")
    assert huge.status_code == 404
    assert huge.json() == {"error": "job 99999999999999999999999999: no such job"}
    far = client.get(f"/jobs/{job_id}/logs", params={"offset": "99999999999999999999"})
    assert far.status_code == 400
    assert far.json()["error"].startswith("request: query offset: Input should be less than")
    word = client.get("/jobs/abc")
    assert word.status_code == 400
    assert word.json() == {
        "error": "request: path job_id: Input should be a valid integer, unable to parse "
        "string as an integer"
    }
    since = client.get("/report", params={"since": "abc"})
    assert since.status_code == 400 and since.json()["error"].startswith("request: query since:")


def test_submit_refuses_what_could_only_fail_later(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    (tmp_path / "afile.txt").write_text("keep\n")

    def refused(**kw: Any) -> str:
        answer = client.post("/jobs", json=_train_body(tmp_path, **kw))
        assert answer.status_code == 400
        return answer.json()["error"]

    assert refused(after=[9999]) == "after: job 9999: no such job"
    assert refused(after=[0]) == "after: job 0: no such job"
    assert refused(run_dir="afile.txt").startswith(
        f"{tmp_path}/afile.txt: run directory already exists;"
    )
    assert refused(run_dir="afile.txt/sub") == (
        f"{tmp_path}/afile.txt/sub: cannot make the run directory (Not a directory: "
        f"{tmp_path}/afile.txt/sub)"
    )
    assert refused(run_dir="/proc/x") == (
        "/proc/x: cannot make the run directory (No such file or directory: /proc/x)"
    )
    assert refused(run_dir="") == "run_dir: empty (leave --run-dir out for runs/<name>)"
    assert agent.store.jobs() == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "afile.txt",
        "state",
    ]
    ok = client.post("/jobs", json=_train_body(tmp_path, run_dir="a/b/c")).json()
    assert ok["run_dir"] == f"{tmp_path}/a/b/c" and not (tmp_path / "a").exists()  # probe undone
    assert client.post("/jobs", json=_train_body(tmp_path, after=[ok["id"]])).status_code == 201


def test_a_corrupt_row_is_listed_and_reported(agent: Agent, tmp_path) -> None:
    client = _client(agent)
    job_id = client.post("/jobs", json=_train_body(tmp_path)).json()["id"]
    with sqlite3.connect(agent.store.path) as db:
        db.execute("UPDATE jobs SET gpus=-5, state='bogus' WHERE id=?", (job_id,))
    (listed,) = client.get("/jobs", params={"all": "true"}).json()
    assert (listed["state"], listed["gpus"]) == ("failed", 0)
    assert listed["corrupt"].startswith(f"jobs.db row {job_id}: state is not one of")
    (reported,) = client.get("/report").json()
    assert reported["gpus"] == 0 and client.get(f"/jobs/{job_id}").status_code == 200
