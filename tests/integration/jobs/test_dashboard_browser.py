"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

One daemon (8 simulated GPUs, on 127.0.0.1) for the module, its database first filled
with 1,000 ended jobs; real short jobs are then submitted through the API. Chromium is
``/usr/bin/chromium`` (``.ci/run`` installs it), never a browser Playwright downloads, and
it is started with the switches that keep it from opening any connection of its own.
Set ``TENSORFAB_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to save the README's screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tensorfab.jobs.client import JobsClient
from tensorfab.jobs.daemon import DaemonProcess
from tensorfab.spec import dump_spec, load_spec

REPO = Path(__file__).resolve().parents[3]
N_OLD_JOBS = 1000
SCREENSHOT = os.environ.get("TENSORFAB_DASHBOARD_SCREENSHOT")


def _benchmark() -> Any:
    """benchmarks/dashboard_load.py: its database filler and its Chromium launch."""
    spec = importlib.util.spec_from_file_location(
        "dashboard_load", REPO / "benchmarks" / "dashboard_load.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _benchmark()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("dashboard")
    BENCH.fill_jobs(root / "state", N_OLD_JOBS, time.time())
    args = ["--simulate-gpus", "8", "--cpus", "2", "--test-jobs", "--grace", "2s"]
    with DaemonProcess(root / "state", args, cwd=root) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(BENCH.CHROMIUM).is_file(), f"{BENCH.CHROMIUM} missing: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = BENCH.launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; the test fails on any script error or error the console shows (CSP too)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == []


def _state(page: Any, job_id: int) -> str:
    return page.locator(f'#jobs tr[data-job="{job_id}"]').get_attribute("data-state")


def _wait_state(page: Any, job_id: int, state: str, timeout_s: float) -> None:
    page.wait_for_selector(
        f'#jobs tr[data-job="{job_id}"][data-state="{state}"]', timeout=timeout_s * 1000
    )


def test_with_1000_jobs_the_first_response_is_the_newest_page_complete_within_1_s(
    daemon: DaemonProcess, page: Any
) -> None:
    html = httpx.get(daemon.url + "/", timeout=10).text  # what a browser without JS gets
    assert 'data-job="1000"' in html and 'data-job="951"' in html
    assert 'data-job="950"' not in html and 'data-job="1"' not in html
    assert "page 1 of 20 (1000 jobs, newest first)" in html
    start = time.perf_counter()
    page.goto(daemon.url + "/", wait_until="load")
    ids = page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => +r.dataset.job)")
    elapsed_s = time.perf_counter() - start
    assert ids == list(range(1000, 950, -1))
    print(f"1,000 jobs: first page's table complete in the browser in {elapsed_s:.3f} s")
    assert elapsed_s < 1.0, f"the table took {elapsed_s:.2f} s"
    page.click('a[rel="next"]')
    assert page.locator("#jobs tbody tr").first.get_attribute("data-job") == "950"


def _steps(page: Any, job_id: int) -> str | None:
    cell = page.locator(f'#running-jobs tr[data-job="{job_id}"] .steps')
    return cell.text_content() if cell.count() else None


def test_a_job_appears_runs_shows_progress_and_succeeds_and_cancel_works(
    daemon: DaemonProcess, page: Any, tmp_path: Path
) -> None:
    spec = load_spec(
        REPO / "examples" / "digits-lenet.yaml",
        ["train.epochs=3", "train.device=cpu", "train.log_every_steps=4", "output.name=live"],
    )
    page.goto(daemon.url + "/")
    with JobsClient(daemon.url) as client:
        body = {"cwd": str(tmp_path), "gpus": 1}
        train = client.submit({"kind": "train", "spec_yaml": dump_spec(spec), **body})["id"]
        sleeper = client.submit({"kind": "sleep", "sleep_s": 120, **body})["id"]
    # no reload: the page's own refresh brings the new jobs in
    page.wait_for_selector(f'#jobs tr[data-job="{train}"]')
    assert page.locator("#jobs tbody tr").first.get_attribute("data-job") == str(sleeper)
    _wait_state(page, sleeper, "running", 30)
    page.click(f'#jobs tr[data-job="{sleeper}"] button.act-cancel')  # a form post + redirect
    assert f"job {sleeper}: cancel done (stopping)" in page.locator("p.note").text_content()
    _wait_state(page, sleeper, "cancelled", 30)
    page.wait_for_selector(f'#running-jobs tr[data-job="{train}"] .steps', timeout=90_000)
    first = _steps(page, train)
    assert _state(page, train) == "running"
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel)?.textContent !== old",
        arg=[f'#running-jobs tr[data-job="{train}"] .steps', first],
        timeout=30_000,
    )
    moved = _steps(page, train)
    if moved is not None:  # it may have ended between the two reads
        assert int(moved.split("/")[0]) > int(first.split("/")[0]), (first, moved)
    _wait_state(page, train, "succeeded", 90)
    assert _state(page, sleeper) == "cancelled"
    counts = page.locator("#summary").text_content()
    assert "0 running" in counts
