"""``train.threads``: an explicit count, the scheduler's grant, the free cores, the warning."""

from __future__ import annotations

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.hardware.threads import decide_threads

BIG = 22_000_000  # minilm-l6
SMALL = 61_706  # LeNet


def test_explicit_count_wins() -> None:
    c = decide_threads(3, BIG, cores=2, machine_cores=2, load=0.0, env="1")
    assert (c.threads, c.requested, c.reason) == (3, "3", "train.threads: 3")


def test_the_jobs_grant_comes_before_the_load() -> None:
    c = decide_threads("auto", BIG, cores=16, machine_cores=16, load=15.0, env="4")
    assert (c.threads, c.reason) == (4, "the job's cores (TENSORFAB_THREADS=4)")


def test_bad_grant_is_one_line() -> None:
    with pytest.raises(
        TensorfabError, match=r"^TENSORFAB_THREADS: must be a whole number >= 1, not 'x'$"
    ):
        decide_threads("auto", BIG, cores=2, machine_cores=2, load=0.0, env="x")


def test_free_cores_count_this_process_as_one_runnable() -> None:
    idle = decide_threads("auto", BIG, cores=8, machine_cores=8, load=1.0)
    assert idle.threads == 8 and not idle.busy
    shared = decide_threads("auto", BIG, cores=8, machine_cores=8, load=4.0)
    assert shared.threads == 5  # 3 other runnables
    assert shared.reason == "5 of 8 cores free (load average 4.0 on 8)"
    affinity = decide_threads("auto", BIG, cores=2, machine_cores=8, load=1.0)
    assert affinity.threads == 2  # never more than the cores this process may use


def test_a_loaded_machine_gets_one_thread_and_a_warning() -> None:
    c = decide_threads("auto", BIG, cores=2, machine_cores=2, load=5.0)
    assert c.threads == 1 and c.busy
    assert "already loaded (load average 5.0 on" in (c.warning() or "")


def test_a_small_model_runs_on_one_thread() -> None:
    c = decide_threads("auto", SMALL, cores=8, machine_cores=8, load=0.0)
    assert c.threads == 1 and c.warning() is None
    assert c.reason == (
        "a model of 61,706 parameters runs on one thread; 8 of 8 cores free (load average 0.0 on 8)"
    )
