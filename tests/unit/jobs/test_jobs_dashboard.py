"""The dashboard in-process (no daemon, no browser): pages, login cookie, buttons, charts."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tensorfab.auth import Identity, TokenTable, hash_token
from tensorfab.jobs.agent import Agent, AgentConfig
from tensorfab.jobs.api import ApiOptions, create_app
from tensorfab.jobs.backend import LocalBackend
from tensorfab.jobs.dashboard import COOKIE, PAGE_SIZE
from tensorfab.jobs.dashboard_html import bar_chart, duration
from tensorfab.jobs.inventory import Gpu, Inventory
from tensorfab.jobs.policy import PolicyConfig
from tensorfab.jobs.store import NewJob, Store

INVENTORY = Inventory([Gpu("sim0", 0, "simulated GPU", 2**30, True)], [0, 1], 2**34)
TOKENS = TokenTable(
    [
        (hash_token("a-token"), Identity("alice", ("vision",))),
        (hash_token("b-token"), Identity("bob", ("speech",))),
    ]
)
HERE = {"Origin": "http://testserver"}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    store = Store(tmp_path / "state", mounts="/dev/vda / ext4 rw 0 0\n")
    yield Agent(store, INVENTORY, LocalBackend(), AgentConfig(PolicyConfig()))
    store.close()


def _client(agent: Agent, tokens: TokenTable | None = None) -> TestClient:
    app = create_app(agent, ApiOptions(tokens, "local-user", allow_test_jobs=False))
    return TestClient(app, follow_redirects=False)


def _add(agent: Agent, user: str = "local-user", team: str = "default", **kw: Any) -> int:
    args = kw.pop("argv", ["export", "runs/x"])
    job = NewJob(user=user, team=team, kind="command", argv=args, cwd="/tmp", **kw)
    return agent.store.add(job, 1000.0)


def _rows(html: str) -> list[tuple[int, str]]:
    """(id, state) of each row of the job table, in order."""
    table = html.split('<table id="jobs">', 1)[1].split("</table>", 1)[0]
    return [(int(i), s) for i, s in re.findall(r'<tr data-job="(\d+)" data-state="(\w+)"', table)]


def test_the_first_response_lists_the_newest_jobs_paged_on_the_server(agent: Agent) -> None:
    for _ in range(2 * PAGE_SIZE + 20):
        _add(agent)
    client = _client(agent)
    first = client.get("/")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    assert [i for i, _ in _rows(first.text)] == list(range(120, 70, -1))
    assert "page 1 of 3 (120 jobs, newest first)" in first.text
    assert 'href="/?page=2"' in first.text and 'rel="prev"' not in first.text
    last = client.get("/", params={"page": 3}).text
    assert [i for i, _ in _rows(last)] == list(range(20, 0, -1))
    assert 'rel="next"' not in last
    beyond = client.get("/", params={"page": 99}).text  # past the end: the last page
    assert _rows(beyond) == _rows(last) and "page 3 of 3" in beyond
    typed = client.get("/", params={"page": "two"})  # a person edited the address
    assert typed.status_code == 200 and _rows(typed.text) == _rows(first.text)
    assert "?page=two is not a page number: showing page 1" in typed.text
    assert client.get("/ui/live", params={"page": "x"}).status_code == 200
    assert "default-src 'self'" in first.headers["content-security-policy"]
    assert "<b>120</b> queued" in first.text


def test_names_from_jobs_are_escaped(agent: Agent) -> None:
    _add(agent, argv=["export", "<script>alert(1)</script>"])
    page = _client(agent).get("/").text
    assert "<script>alert" not in page
    assert "export &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_buttons_follow_the_state_and_cancel_posts_back_with_a_note(agent: Agent) -> None:
    queued, held = _add(agent), _add(agent, hold=True)
    client = _client(agent)
    page = client.get("/").text
    assert f'action="/ui/jobs/{queued}/cancel?page=1"' in page
    assert f'action="/ui/jobs/{queued}/hold?page=1"' in page
    assert f'action="/ui/jobs/{held}/release?page=1"' in page
    assert f'action="/ui/jobs/{held}/hold' not in page
    answer = client.post(f"/ui/jobs/{queued}/cancel?page=1", headers=HERE)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/?page=1&note=job+{queued}%3A+cancel+done"
    assert agent.store.get(queued)["state"] == "cancelled"
    again = client.get(answer.headers["location"]).text
    assert f"job {queued}: cancel done" in again
    assert _rows(again) == [(held, "held"), (queued, "cancelled")]
    refused = client.post(f"/ui/jobs/{held}/hold", headers=HERE).headers["location"]
    assert "note=job+2%3A+is+held%3B+cannot+hold+it" in refused


def test_a_button_from_another_site_does_nothing(agent: Agent) -> None:
    job = _add(agent)
    client = _client(agent)
    answer = client.post(f"/ui/jobs/{job}/cancel", headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403
    assert client.post(f"/ui/jobs/{job}/cancel").status_code == 403  # no Origin, no Referer
    assert agent.store.get(job)["state"] == "queued"


def test_with_tokens_a_browser_logs_in_once_and_gets_an_httponly_cookie(agent: Agent) -> None:
    client = _client(agent, TOKENS)
    form = client.get("/")
    assert form.status_code == 200 and '<form method="post" action="/login">' in form.text
    assert client.get("/ui/live").status_code == 401
    assert client.get("/jobs").status_code == 401
    wrong = client.post("/login", data={"token": "guess"})
    assert (wrong.status_code, "wrong token" in wrong.text) == (401, True)
    answer = client.post("/login", data={"token": "a-token"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=a-token;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    assert '<span class="who">alice</span>' in page.text
    assert client.get("/jobs").status_code == 200  # the API accepts the cookie too
    out = client.post("/logout", headers=HERE)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_only_the_owner_gets_buttons_and_may_act(agent: Agent) -> None:
    mine, theirs = _add(agent, "alice", "vision"), _add(agent, "bob", "speech")
    client = _client(agent, TOKENS)
    client.cookies.set(COOKIE, "a-token")
    page = client.get("/").text
    assert f"/ui/jobs/{mine}/cancel" in page and f"/ui/jobs/{theirs}/" not in page
    answer = client.post(f"/ui/jobs/{theirs}/cancel", headers=HERE)
    assert "belongs+to+bob%2C+not+alice" in answer.headers["location"]
    assert agent.store.get(theirs)["state"] == "queued"
    # a cookie-authenticated change from another site is refused before any route runs
    cross = client.post(f"/jobs/{mine}/cancel", headers={"Origin": "http://evil.example"})
    assert (cross.status_code, agent.store.get(mine)["state"]) == (403, "queued")
    # the CLI's bearer header needs no Origin
    bearer = {"Authorization": "Bearer a-token"}
    assert client.post(f"/jobs/{mine}/cancel", headers=bearer).json()["state"] == "cancelled"


def test_running_jobs_show_progress_and_devices_say_simulated(agent: Agent, tmp_path) -> None:
    run = tmp_path / "runs" / "digits"
    run.mkdir(parents=True)
    job = _add(agent, run_dir=str(run))
    agent.store.claim(job, ["sim0"], [0], 1000.0)
    records = [
        {"kind": "train", "step": 20, "epoch": 1, "loss": 0.9, "samples_per_s": 1280.0,
         "time": 10.0, "total_steps": 200, "mfu": None},
        {"kind": "eval", "epoch": 1, "step": 40, "train_loss": 0.8, "eval_loss": 0.7,
         "accuracy": 0.8125},
        {"kind": "train", "step": 60, "epoch": 2, "loss": 0.25, "samples_per_s": 1536.0,
         "time": 30.0, "total_steps": 200, "mfu": 0.123},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    live = _client(agent).get("/ui/live").text
    row = live.split('<table id="running-jobs">', 1)[1].split("</table>", 1)[0]
    cells = dict(re.findall(r'<td class="(\w+)">(.*?)</td>', row))
    # 40 steps in 20 s: 2 steps/s, 140 steps left -> 70 s
    assert cells == {
        "epoch": "2",
        "progress": '<progress max="1" value="0.3000"></progress> '
        '<span class="steps">60/200</span>',
        "loss": "0.2500",
        "metric": "accuracy 0.8125",
        "sps": "1,536",
        "mfu": "12.3%",
        "eta": "1m 10s",
    }
    devices = live.split('<table id="device-table">', 1)[1]
    assert 'sim0 <span class="badge">simulated</span>' in devices
    assert f"<td>{job} (local-user/default)</td>" in devices
    assert "simulated: no readings" in devices
    assert "<html" not in live  # the live part only


def test_usage_charts_sum_gpu_and_cpu_hours_by_team_and_user(agent: Agent) -> None:
    now = time.time()
    for user, team, gpus in (("alice", "vision", 2), ("bob", "speech", 1), ("dan", "vision", 1)):
        job = _add(agent, user, team, gpus=gpus)
        agent.store.transition(job, "succeeded", "done", now, started_at=now - 1800, run_s=1800.0)
    live = _client(agent).get("/ui/live").text
    team = live.split('id="usage-team"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'class="label">(\w+)</text>', team)
    values = re.findall(r'class="value">([\d.]+)</text>', team)
    # vision: (2 + 1) GPUs x 0.5 h = 1.5 GPU-hours, 2 jobs x 1 CPU x 0.5 h = 1.0 CPU-hour
    assert (labels, values) == (["vision", "speech"], ["1.50", "1.00", "0.50", "0.50"])
    user = live.split('id="usage-user"', 1)[1].split("</svg>", 1)[0]
    assert re.findall(r'class="label">(\w+)</text>', user) == ["alice", "bob", "dan"]


def test_static_files_come_from_the_package(agent: Agent) -> None:
    client = _client(agent, TOKENS)  # open: the login page needs its stylesheet
    css = client.get("/static/dashboard.css")
    assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")
    js = client.get("/static/dashboard.js")
    assert js.status_code == 200 and "/ui/live" in js.text
    assert client.get("/static/other.js").status_code == 401  # not open, and not served
    assert _client(agent).get("/static/../api.py").status_code == 404


def test_bar_chart_scales_bars_to_the_largest_value() -> None:
    rows = [
        {"key": "vision", "gpu_hours": 2.0, "cpu_hours": 1.0},
        {"key": "<nlp>", "gpu_hours": 1.0, "cpu_hours": 0.0},
    ]
    svg = bar_chart("usage-team", "by team", rows)
    bars = r'<rect class="bar-\w+" x="110" y="\d+" width="([\d.]+)" height="14"><title>'
    widths = re.findall(bars, svg)
    # 460 px wide, 110 for labels, 70 for values: 280 px for the largest (2 GPU-hours)
    assert widths == ["280.0", "140.0", "140.0", "0.0"]
    assert "&lt;nlp&gt;" in svg and "<nlp>" not in svg


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (0.4, "0 s"), (59.6, "1m 00s"), (245, "4m 05s"), (3720, "1h 02m"),
     (183600, "2d 03h")],
)  # fmt: skip
def test_durations_read_like_a_person_writes_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_real_gpus_show_their_nvml_readings(tmp_path: Path, monkeypatch) -> None:
    import tensorfab.hardware

    readings = {"utilization_pct": 87, "memory_used_bytes": 3 * 2**30, "power_w": 250.4}
    monkeypatch.setattr(tensorfab.hardware, "gpu_readings", lambda index, uuid: readings)
    gpu = Gpu("GPU-1234", 0, "NVIDIA H100 80GB HBM3", 80 * 2**30, False)
    store = Store(tmp_path / "state", mounts="/dev/vda / ext4 rw 0 0\n")
    try:
        agent = Agent(
            store, Inventory([gpu], [0], 2**34), LocalBackend(), AgentConfig(PolicyConfig())
        )
        devices = _client(agent).get("/ui/live").text.split('<table id="device-table">', 1)[1]
    finally:
        store.close()
    assert (
        "<tr><td>GPU-1234 </td><td>NVIDIA H100 80GB HBM3</td><td>idle</td>"
        "<td>87 %</td><td>3.0 GiB / 80.0 GiB</td><td>250 W</td></tr>"
    ) in devices
    assert "simulated" not in devices
