"""The job queue on disk: one SQLite database per node, every state change one transaction.

The daemon alone opens it (users go through its API). WAL mode keeps readers (the API)
from blocking the writer (the agent). Claiming a job is one ``UPDATE ... WHERE state IN
(queued, preempted)``: two claims of the same job cannot both succeed. Every state change
appends an event (time, state, reason) in the same transaction, so ``jobs show`` tells the
whole history and a crash never leaves a job changed without its reason.

Opening refuses, with one line each and without touching the file: a state dir on a network
filesystem (WAL needs shared memory that NFS and friends do not give), a second daemon on
the same state dir (an ``flock`` held for the daemon's life), a database another process
holds locked, and a file that is not a sound SQLite database (never recreated).
"""

from __future__ import annotations

import copy
import fcntl
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError

STATES = ("queued", "held", "running", "preempted", "succeeded", "failed", "cancelled")
WAITING = ("queued", "preempted")  # in the queue, may be started
ENDED = ("succeeded", "failed", "cancelled")
MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id names no job (never an OverflowError)
KINDS = ("train", "command", "sleep")  # preemptible and resumable; any command; tests only
NETWORK_FS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "sshfs",
    "lustre",
    "gpfs",
    "ceph",
    "fuse.ceph",
    "fuse.glusterfs",
    "glusterfs",
    "9p",
    "afs",
    "beegfs",
)
MOUNTS = Path("/proc/mounts")
DB_NAME = "jobs.db"
LOCK_NAME = "daemon.lock"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    user TEXT NOT NULL,
    team TEXT NOT NULL,
    kind TEXT NOT NULL,
    argv TEXT NOT NULL,
    cwd TEXT NOT NULL,
    run_dir TEXT,
    spec TEXT,
    priority INTEGER NOT NULL,
    gpus INTEGER NOT NULL,
    cpus INTEGER NOT NULL,
    mem_bytes INTEGER NOT NULL,
    time_limit_s REAL,
    after TEXT NOT NULL,
    retries INTEGER NOT NULL,
    retries_used INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    submitted_at REAL NOT NULL,
    queued_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    wait_s REAL NOT NULL DEFAULT 0,
    run_s REAL NOT NULL DEFAULT 0,
    gpu_s REAL NOT NULL DEFAULT 0,
    cpu_s REAL NOT NULL DEFAULT 0,
    energy_j REAL,
    energy_start TEXT,
    devices TEXT NOT NULL DEFAULT '[]',
    cores TEXT NOT NULL DEFAULT '[]',
    stop_reason TEXT,
    stop_sent_at REAL,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
"""
JSON_FIELDS = ("argv", "after", "devices", "cores", "energy_start")
USAGE_COLUMNS = (
    "id",
    "user",
    "team",
    "state",
    "submitted_at",
    "started_at",
    "ended_at",
    "gpus",
    "cpus",
    "wait_s",
    "queued_at",
    "run_s",
    "energy_j",
    "preemptions",
    "retries_used",
)


@dataclass
class NewJob:
    """What a submit asks for (already checked by the daemon)."""

    user: str
    team: str
    kind: str  # "train" (preemptible, resumable), "command" or "sleep" (benchmarks only)
    argv: list[str]
    cwd: str
    run_dir: str | None = None
    spec: str | None = None  # train jobs: the resolved spec YAML, snapshotted at submit
    priority: int = 0
    gpus: int = 0
    cpus: int = 1
    mem_bytes: int = 0
    time_limit_s: float | None = None
    after: list[int] = field(default_factory=list)
    retries: int = 0
    hold: bool = False


def fs_type(path: Path, mounts: str | None = None) -> str:
    """The filesystem type of ``path``: the entry of /proc/mounts with the longest mount point."""
    text = mounts if mounts is not None else _read_mounts()
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def _read_mounts() -> str:
    try:
        return MOUNTS.read_text()
    except OSError:  # no /proc (macOS): nothing to refuse
        return ""


def check_local_disk(state_dir: Path, mounts: str | None = None) -> None:
    """Refuse a state dir on a network filesystem, where SQLite's WAL is not safe."""
    kind = fs_type(state_dir, mounts)
    if kind in NETWORK_FS or kind.startswith(("nfs", "fuse.sshfs")):
        raise TensorfabError(
            f"{state_dir}: on a network filesystem ({kind}); the job database needs a local "
            "disk: pass --state-dir on one"
        )


# -- a row read back: checked in this one place ------------------------------------------
# jobs.db is a plain file: a person (or a bug) can write anything into a row, and SQLite
# keeps any type in any column. Every row read goes through _row, which checks each column
# against what the daemon itself writes; a bad value is replaced by a harmless one (so
# listings, reports and the policy never see it) and the row carries ``corrupt``: "jobs.db
# row 14: argv is not JSON". The agent fails such a job once, naming that; nothing deletes it.


def _is_int(v: Any, low: int | None = 0, high: int | None = None) -> bool:
    if type(v) is not int:  # bool is an int subclass; "3" or 3.0 is not what was written
        return False
    return (low is None or v >= low) and (high is None or v <= high)


def _is_num(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _ints(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# column -> (is it sound, what it must be, the harmless value shown instead)
COLUMNS: dict[str, tuple[Callable[[Any], bool], str, Any]] = {
    "state": (lambda v: v in STATES, f"not one of {', '.join(STATES)}", "failed"),
    "kind": (lambda v: v in KINDS, f"not one of {', '.join(KINDS)}", "command"),
    "argv": (_strs, "not a list of strings", []),
    "after": (_ints, "not a list of job ids", []),
    "devices": (_strs, "not a list of device ids", []),
    "cores": (_ints, "not a list of core numbers", []),
    "energy_start": (lambda v: v is None or isinstance(v, dict), "not an object", None),
    "priority": (lambda v: _is_int(v, 0, 9), "not a number 0-9", 0),
    "cpus": (lambda v: _is_int(v, 1), "not a whole number of at least 1", 1),
    **{
        k: (_is_int, "not a whole number of at least 0", 0)
        for k in ("gpus", "mem_bytes", "retries", "retries_used", "preemptions", "attempt")
    },
    "time_limit_s": (lambda v: v is None or (_is_num(v) and v > 0), "not above 0", None),
    **{
        k: (lambda v: _is_num(v) and v >= 0, "not a number of at least 0", 0.0)
        for k in ("submitted_at", "queued_at", "wait_s", "run_s", "gpu_s", "cpu_s")
    },
    **{
        k: (lambda v: v is None or _is_num(v), "not a number", None)
        for k in ("started_at", "ended_at", "energy_j", "stop_sent_at")
    },
    "exit_code": (lambda v: v is None or _is_int(v, None), "not a whole number", None),
    **{k: (lambda v: isinstance(v, str), "not text", "") for k in ("user", "team", "cwd")},
    "reason": (lambda v: isinstance(v, str), "not text", ""),
    **{
        k: (lambda v: v is None or isinstance(v, str), "not text", None)
        for k in ("run_dir", "spec", "stop_reason")
    },
}


def _decoded(key: str, value: Any) -> tuple[Any, bool]:
    if key not in JSON_FIELDS or value is None:
        return value, True
    try:
        return json.loads(value), True
    except (TypeError, ValueError, RecursionError):  # not text, not JSON, nested too deep
        return None, False


def _column(key: str, value: Any) -> tuple[Any, str | None]:
    """The column's value as the daemon uses it, or a harmless one and what is wrong."""
    check, want, harmless = COLUMNS.get(key, (lambda _v: True, "", None))
    value, decoded = _decoded(key, value)
    if not decoded:
        return copy.copy(harmless), f"{key} is not JSON"
    if not check(value):
        return copy.copy(harmless), f"{key} is {want}"
    return value, None


def _row(row: sqlite3.Row) -> dict[str, Any]:
    """A job from a database row, every column checked (see COLUMNS)."""
    out: dict[str, Any] = {}
    problems = []
    for key, raw in dict(row).items():
        out[key], problem = _column(key, raw)
        problems += [problem] if problem else []
    if problems:
        out["corrupt"] = f"{DB_NAME} row {out.get('id')}: {'; '.join(problems)}"
    return out


class Store:
    """The job database; one per daemon. Thread-safe: one connection behind a lock."""

    def __init__(
        self, state_dir: Path, *, mounts: str | None = None, jobs_dir: Path | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.jobs_dir = Path(jobs_dir) if jobs_dir else self.state_dir / "jobs"  # job folders
        self.path = self.state_dir / DB_NAME
        self._mutex = threading.RLock()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        check_local_disk(self.state_dir, mounts)
        self._lock_fd = _take_daemon_lock(self.state_dir)
        try:
            self.db = _connect(self.path)
        except TensorfabError:
            os.close(self._lock_fd)
            raise

    def close(self) -> None:
        with self._mutex:
            self.db.close()
            os.close(self._lock_fd)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: everything in the block is written, or nothing."""
        with self._mutex:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self.db.execute("ROLLBACK") if self.db.in_transaction else None
                raise _db_error(self.path, exc) from None
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    # -- writes -------------------------------------------------------------------------

    def add(self, job: NewJob, now: float) -> int:
        """Insert a submitted job (queued, or held) and its first event; returns its id."""
        state = "held" if job.hold else "queued"
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO jobs (state, user, team, kind, argv, cwd, run_dir, spec, priority,"
                " gpus, cpus, mem_bytes, time_limit_s, after, retries, submitted_at, queued_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    state,
                    job.user,
                    job.team,
                    job.kind,
                    json.dumps(job.argv),
                    job.cwd,
                    job.run_dir,
                    job.spec,
                    job.priority,
                    job.gpus,
                    job.cpus,
                    job.mem_bytes,
                    job.time_limit_s,
                    json.dumps(job.after),
                    job.retries,
                    now,
                    now,
                ),
            )
            job_id = int(cur.lastrowid or 0)
            _event(db, job_id, now, state, f"submitted by {job.user} (team {job.team})")
        return job_id

    def claim(self, job_id: int, devices: list[str], cores: list[int], now: float) -> bool:
        """Atomically move a waiting job to running on ``devices``/``cores``.

        False when the job is no longer waiting (cancelled, held, claimed): the caller
        starts nothing then.
        """
        with self.tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='running', devices=?, cores=?, started_at=?,"
                " wait_s = wait_s + (? - queued_at), attempt = attempt + 1,"
                " stop_reason=NULL, stop_sent_at=NULL, exit_code=NULL"
                " WHERE id=? AND state IN ('queued','preempted')",
                (json.dumps(devices), json.dumps(cores), now, now, job_id),
            )
            if cur.rowcount != 1:
                return False
            where = ", ".join(devices) if devices else "CPU only"
            _event(db, job_id, now, "running", f"started on {where}")
        return True

    def transition(self, job_id: int, state: str, reason: str, now: float, **changes: Any) -> None:
        """Set ``state`` (and any column in ``changes``) and record the event, in one go."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        sets = {"state": state, **changes}
        if state in WAITING:
            sets.setdefault("queued_at", now)
        if state in ENDED:
            sets.setdefault("ended_at", now)
        cols = ", ".join(f"{k}=?" for k in sets)
        values = [json.dumps(v) if k in JSON_FIELDS else v for k, v in sets.items()]
        with self.tx() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", [*values, job_id])
            _event(db, job_id, now, state, reason)

    def update(self, job_id: int, **changes: Any) -> None:
        """Change columns that are not a state change (stop request, energy baseline)."""
        cols = ", ".join(f"{k}=?" for k in changes)
        values = [json.dumps(v) if k in JSON_FIELDS else v for k, v in changes.items()]
        with self.tx() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", [*values, job_id])

    def note(self, job_id: int, state: str, reason: str) -> None:
        """Record an event that changes no state (a stop signal sent, an adoption)."""
        with self.tx() as db:
            _event(db, job_id, time.time(), state, reason)

    def change_if(self, job_id: int, allowed: tuple[str, ...], state: str, reason: str) -> bool:
        """Move a job to ``state`` only from one of ``allowed`` (hold, release, cancel)."""
        now = time.time()
        marks = ",".join("?" * len(allowed))
        # back in the queue: its wait restarts now; ended: it ends now; held: neither
        column = "queued_at" if state in WAITING else "ended_at" if state in ENDED else "state"
        value = state if column == "state" else now
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET state=?, {column}=? WHERE id=? AND state IN ({marks})",
                (state, value, job_id, *allowed),
            )
            if cur.rowcount != 1:
                return False
            _event(db, job_id, now, state, reason)
        return True

    # -- reads --------------------------------------------------------------------------

    def get(self, job_id: int) -> dict[str, Any] | None:
        if not 0 <= job_id <= MAX_ID:
            return None
        with self._mutex:
            row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _row(row) if row else None

    def jobs(self, states: tuple[str, ...] | None = None, since: float | None = None) -> list[dict]:
        """Jobs in ``states`` (all when None) submitted at or after ``since``, by id."""
        query, params = "SELECT * FROM jobs WHERE 1=1", []
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        if since is not None:
            query += " AND submitted_at >= ?"
            params.append(since)
        with self._mutex:
            rows = self.db.execute(query + " ORDER BY id", params).fetchall()
        return [_row(r) for r in rows]

    def page(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """``limit`` jobs from ``offset``, newest first: one indexed query, whatever the size.

        The dashboard's table; :meth:`counts` gives the number of jobs for its pager.
        """
        with self._mutex:
            rows = self.db.execute(
                "SELECT * FROM jobs ORDER BY id DESC LIMIT ? OFFSET ?",
                (min(limit, MAX_ID), min(max(0, offset), MAX_ID)),
            ).fetchall()
        return [_row(r) for r in rows]

    def usage_rows(self, since: float) -> list[dict[str, Any]]:
        """Accounting's columns of the jobs that ended at/after ``since`` or have not ended.

        Only plain columns (no spec, no JSON to decode): the dashboard's usage charts read
        them on every refresh.
        """
        cols = ", ".join(USAGE_COLUMNS)
        query = f"SELECT {cols} FROM jobs WHERE ended_at IS NULL OR ended_at >= ? ORDER BY id"
        with self._mutex:
            rows = self.db.execute(query, (since,)).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (states without jobs are left out)."""
        with self._mutex:
            rows = self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def events(self, job_id: int) -> list[dict[str, Any]]:
        if not 0 <= job_id <= MAX_ID:
            return []
        with self._mutex:
            rows = self.db.execute(
                "SELECT at, state, reason FROM events WHERE job_id=? ORDER BY id", (job_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def states_of(self, ids: list[int]) -> dict[int, str]:
        ids = [i for i in ids if 0 <= i <= MAX_ID]
        if not ids:
            return {}
        with self._mutex:
            rows = self.db.execute(
                f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchall()
        return {int(r["id"]): r["state"] for r in rows}


def _event(db: sqlite3.Connection, job_id: int, now: float, state: str, reason: str) -> None:
    db.execute(
        "INSERT INTO events (job_id, at, state, reason) VALUES (?,?,?,?)",
        (job_id, now, state, reason),
    )


def _take_daemon_lock(state_dir: Path) -> int:
    """Hold an exclusive ``flock`` for the daemon's life: a second daemon gets one line."""
    fd = os.open(state_dir / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TensorfabError(
            f"{state_dir}: a jobs daemon already runs on this state dir "
            "(stop it, or pass another --state-dir)"
        ) from None
    return fd


def _db_error(path: Path, exc: sqlite3.Error) -> TensorfabError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return TensorfabError(
            f"{path}: the job database is locked by another process ({text}); nothing was changed"
        )
    return TensorfabError(
        f"{path}: not a usable job database ({text}); it was left as it is: "
        "move it aside to start an empty queue"
    )


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the database, WAL on, schema in place; damage is one error."""
    try:
        db = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _db_error(path, exc) from None
    db.row_factory = sqlite3.Row
    try:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:
        db.close()
        raise _db_error(path, exc) from None
    return db
