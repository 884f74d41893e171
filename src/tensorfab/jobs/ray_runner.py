"""The Ray actor that runs one attempt of a job: ``JobRunner``.

A module of its own that imports only the standard library and the local backend (no
torch, no hardware probing): every attempt is a new actor, so what its worker process
imports is paid per job (importing torch there cost 4.7 s a job on a busy 2-core machine).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tensorfab.jobs.backend import Ended, Handle, Launch, LocalBackend


class JobRunner:
    """Runs one attempt on the node Ray placed it; holds its resources while it lives.

    A threaded actor: ``run`` blocks for the job's life while ``signal`` and ``result``
    are served beside it.
    """

    def __init__(self) -> None:
        self.local = LocalBackend()
        self.handle: Handle | None = None
        self.done = threading.Event()
        self.outcome: dict[str, Any] = {}

    def run(self, record: dict[str, Any]) -> None:
        import ray

        gpus = [str(g) for g in ray.get_gpu_ids()]
        env = {**record["env"], "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
        launch = Launch(**{**record, "job_dir": Path(record["job_dir"]), "env": env, "cores": []})
        try:
            self.handle = self.local.start(launch)
            self.handle.process.wait()
            ended = self.local.poll(self.handle)
            self.outcome = asdict(ended) if isinstance(ended, Ended) else {}
        finally:
            self.done.set()

    def result(self) -> dict[str, Any]:
        """How the attempt ended (``{}``: its supervisor died); blocks until then."""
        self.done.wait()
        return self.outcome

    def signal(self, signum: int) -> bool:
        return self.handle is not None and self.local.signal(self.handle, signum)
