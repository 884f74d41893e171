"""The job store: transactions, the atomic claim, events, and its one-line refusals."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.jobs.store import NewJob, Store, check_local_disk, fs_type

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,relatime 0 0
/dev/vdb /home/alice/local ext4 rw 0 0
alice@box:/data /mnt/data fuse.sshfs rw 0 0
//fs/share /mnt/my\\040share cifs rw 0 0
"""


def _job(**kw: object) -> NewJob:
    base = {"user": "alice", "team": "vision", "kind": "command", "argv": ["info"], "cwd": "/"}
    return NewJob(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state", mounts="/dev/vda / ext4 rw 0 0\n")
    yield s
    s.close()


def test_fs_type_takes_the_longest_mount_point() -> None:
    assert fs_type(Path("/home/alice/x"), MOUNTS) == "nfs4"
    assert fs_type(Path("/home/alice/local/jobs"), MOUNTS) == "ext4"
    assert fs_type(Path("/homework"), MOUNTS) == "ext4"  # not inside /home
    assert fs_type(Path("/mnt/my share/q"), MOUNTS) == "cifs"  # \040 is a space


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/home/bob/jobs", "nfs4"), ("/mnt/data/q", "fuse.sshfs"), ("/mnt/my share/q", "cifs")],
)
def test_network_filesystems_are_refused_in_one_line(path: str, kind: str) -> None:
    with pytest.raises(TensorfabError) as info:
        check_local_disk(Path(path), MOUNTS)
    assert str(info.value) == (
        f"{path}: on a network filesystem ({kind}); the job database needs a local disk: "
        "pass --state-dir on one"
    )


def test_local_disk_is_accepted() -> None:
    check_local_disk(Path("/home/alice/local/jobs"), MOUNTS)


def test_store_refuses_a_state_dir_on_nfs_before_writing(tmp_path: Path) -> None:
    mounts = f"/dev/vda / ext4 rw 0 0\nsrv:/x {tmp_path} nfs rw 0 0\n"
    with pytest.raises(TensorfabError, match=r"on a network filesystem \(nfs\)"):
        Store(tmp_path / "state", mounts=mounts)
    assert not (tmp_path / "state" / "jobs.db").exists()


def test_add_records_the_job_and_its_first_event(store: Store) -> None:
    job_id = store.add(_job(priority=7, gpus=2, after=[3]), now=100.0)
    row = store.get(job_id)
    assert row is not None
    assert (row["state"], row["priority"], row["gpus"], row["after"]) == ("queued", 7, 2, [3])
    assert row["argv"] == ["info"]
    events = store.events(job_id)
    assert [(e["at"], e["state"]) for e in events] == [(100.0, "queued")]
    assert events[0]["reason"] == "submitted by alice (team vision)"
    held = store.add(_job(hold=True), now=101.0)
    assert store.get(held)["state"] == "held"


def test_claim_moves_a_waiting_job_once_and_adds_its_wait(store: Store) -> None:
    job_id = store.add(_job(), now=100.0)
    assert store.claim(job_id, ["sim0"], [0, 1], now=104.5)
    assert not store.claim(job_id, ["sim1"], [2], now=105.0)  # already running
    row = store.get(job_id)
    assert (row["state"], row["devices"], row["cores"], row["attempt"]) == (
        "running",
        ["sim0"],
        [0, 1],
        1,
    )
    assert row["wait_s"] == pytest.approx(4.5)
    assert store.events(job_id)[-1]["reason"] == "started on sim0"


def test_claim_is_atomic_across_threads(store: Store) -> None:
    job_id = store.add(_job(), now=0.0)
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda: wins.append(store.claim(job_id, [], [0], 1.0)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(wins) == [False] * 7 + [True]


def test_claim_refuses_held_and_cancelled_jobs(store: Store) -> None:
    held = store.add(_job(hold=True), now=0.0)
    assert not store.claim(held, [], [0], 1.0)
    assert store.change_if(held, ("held",), "queued", "release by alice")
    assert store.change_if(held, ("queued",), "held", "hold by alice")
    assert store.get(held)["ended_at"] is None  # held is not ended
    queued = store.add(_job(), now=0.0)
    assert store.change_if(queued, ("queued",), "cancelled", "cancel by alice")
    assert not store.claim(queued, [], [0], 1.0)
    assert store.get(queued)["ended_at"] is not None


def test_a_failed_transaction_changes_nothing(store: Store) -> None:
    job_id = store.add(_job(), now=0.0)
    with pytest.raises(RuntimeError), store.tx() as db:
        db.execute("UPDATE jobs SET state='running' WHERE id=?", (job_id,))
        raise RuntimeError("crash in the middle")
    assert store.get(job_id)["state"] == "queued"


def test_transition_sets_state_columns_and_event_together(store: Store) -> None:
    job_id = store.add(_job(), now=0.0)
    store.claim(job_id, ["sim0"], [0], 10.0)
    store.transition(job_id, "preempted", "preempted (exit 143)", 20.0, preemptions=1)
    row = store.get(job_id)
    assert (row["state"], row["preemptions"], row["queued_at"]) == ("preempted", 1, 20.0)
    store.claim(job_id, ["sim1"], [0], 25.0)
    assert store.get(job_id)["wait_s"] == pytest.approx(10.0 + 5.0)
    store.transition(job_id, "succeeded", "exit 0", 30.0, exit_code=0)
    row = store.get(job_id)
    assert (row["state"], row["ended_at"], row["attempt"]) == ("succeeded", 30.0, 2)
    states = [e["state"] for e in store.events(job_id)]
    assert states == ["queued", "running", "preempted", "running", "succeeded"]


def test_a_second_daemon_on_the_same_state_dir_is_refused(store: Store) -> None:
    with pytest.raises(TensorfabError) as info:
        Store(store.state_dir, mounts="/dev/vda / ext4 rw 0 0\n")
    assert str(info.value) == (
        f"{store.state_dir}: a jobs daemon already runs on this state dir "
        "(stop it, or pass another --state-dir)"
    )


def test_a_corrupt_database_is_one_error_and_left_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    garbage = b"this is not SQLite" * 100
    (state / "jobs.db").write_bytes(garbage)
    with pytest.raises(TensorfabError) as info:
        Store(state, mounts="/dev/vda / ext4 rw 0 0\n")
    assert str(info.value).startswith(f"{state / 'jobs.db'}: not a usable job database (")
    assert "move it aside" in str(info.value)
    assert (state / "jobs.db").read_bytes() == garbage
    # the refusal released the daemon lock: after moving the file aside a daemon starts
    (state / "jobs.db").rename(state / "jobs.db.bad")
    Store(state, mounts="/dev/vda / ext4 rw 0 0\n").close()


def test_a_locked_database_is_one_error(store: Store) -> None:
    job_id = store.add(_job(), now=0.0)
    other = sqlite3.connect(store.path, timeout=0.1, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store.db.execute("PRAGMA busy_timeout=100")
    try:
        with pytest.raises(TensorfabError, match="the job database is locked by another process"):
            store.claim(job_id, [], [0], 1.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.get(job_id)["state"] == "queued"


def test_pages_are_newest_first_and_counts_and_usage_rows_cover_the_window(store: Store) -> None:
    ids = [store.add(_job(hold=i == 0), 100.0 + i) for i in range(7)]
    store.transition(ids[1], "succeeded", "done", 50.0)  # ended before the window
    store.transition(ids[2], "failed", "done", 500.0)
    assert [r["id"] for r in store.page(0, 3)] == [7, 6, 5]
    assert [r["id"] for r in store.page(6, 3)] == [1]
    assert store.page(9, 3) == []
    assert store.counts() == {"held": 1, "queued": 4, "succeeded": 1, "failed": 1}
    window = store.usage_rows(since=200.0)
    assert [r["id"] for r in window] == [1, 3, 4, 5, 6, 7]
    assert "spec" not in window[0] and window[1]["state"] == "failed"


@pytest.mark.parametrize(
    ("column", "value", "problem", "shown"),
    [
        ("argv", "{not json", "argv is not JSON", []),
        ("after", '[99999, "x"]', "after is not a list of job ids", []),
        ("gpus", -5, "gpus is not a whole number of at least 0", 0),
        (
            "state",
            "bogus",
            "state is not one of queued, held, running, preempted, succeeded, failed, cancelled",
            "failed",
        ),
        ("priority", 999, "priority is not a number 0-9", 0),
        ("cpus", "two", "cpus is not a whole number of at least 1", 1),
    ],
)
def test_a_hand_edited_row_is_read_with_a_harmless_value_naming_row_and_column(
    store: Store, column: str, value: object, problem: str, shown: object
) -> None:
    good, bad = store.add(_job(), 1.0), store.add(_job(gpus=1), 2.0)
    with sqlite3.connect(store.path) as db:  # as a person with the sqlite3 shell would
        db.execute(f"UPDATE jobs SET {column}=? WHERE id=?", (value, bad))
    row = store.get(bad)
    assert row["corrupt"] == f"jobs.db row {bad}: {problem}" and row[column] == shown
    assert "corrupt" not in store.get(good)
    assert [r["id"] for r in store.jobs()] == [good, bad]  # listed, never dropped
    usage = {r["id"]: r for r in store.usage_rows(0.0)}
    assert usage[bad]["gpus"] == (0 if column == "gpus" else 1)


def test_ids_beyond_sqlite_integers_name_no_job(store: Store) -> None:
    store.add(_job(), 1.0)
    assert store.get(10**26) is None and store.events(10**26) == []
    assert store.states_of([1, 10**26, -1]) == {1: "queued"}
    assert len(store.page(10**30, 10**30)) == 0 and len(store.page(0, 10**30)) == 1
