"""Atomic file writes: a reader (or a crash) never sees half a file.

Every file tensorfab must not leave half-written (checkpoints, weights, package
descriptions, run specs, reports, metric logs it rewrites, caches) goes through
:func:`atomic_path`: the writer fills a temporary file beside the target, the data is
fsynced, and one ``os.replace`` puts it in place. The result gets the mode any plain write
would get under the user's umask (0644 usually), whatever the writer did: safetensors'
``save_file`` creates its file 0600, which left a run's weights unreadable to the teammates
who could read its report (issue 21).

A writer killed mid-write (SIGKILL, power loss) cannot remove its temporary file, so the
next write of the same target removes the temporaries of writers that are no longer
running (their pid is in the name); a live writer's is left alone. The name also holds the
writing thread: two threads of one process may write the same target at once (the jobs
daemon's API and its agent both write a job's ``spec.yaml``), and with one name per process
the first one's rename took the second one's file away under it (a 500 on ``POST /jobs``).
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PLAIN_FILE_MODE = 0o666  # what open(..., "w") asks for; the umask takes away from it


def current_umask() -> int:
    """The process's umask, read without changing it where the OS shows it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block ends without error.

    The block writes the whole file to the yielded path with whatever writer it likes
    (``torch.save``, safetensors, ``write_text``). On an error the temporary file is
    removed and ``path`` keeps what it held before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, PLAIN_FILE_MODE & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, running
        pass
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that are no longer running.

    Only names :func:`atomic_path` makes (``.<name>.<pid>.<thread>.tmp``, or the older
    ``.<name>.<pid>.tmp``) whose pid is not a running process; returns what was removed.
    """
    prefix, removed = f".{path.name}.", []
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix) : -len(".tmp")].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
