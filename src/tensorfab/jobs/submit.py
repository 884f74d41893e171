"""A submit request checked and turned into a job: who may charge what, what will run.

The daemon calls :func:`build_job` for every ``POST /jobs``: the request's spec (resolved
YAML, as the CLI sent it) is validated again (a request may come from anything), its
output folder is fixed to an absolute run directory under the submitter's working
directory (or ``run_dir``), the team is checked against the caller's identity, and the
resources against the node. Every refusal is one :class:`TensorfabError` naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tensorfab.errors import TensorfabError
from tensorfab.jobs.policy import Job, Node, fits_anywhere
from tensorfab.jobs.store import KINDS, NewJob
from tensorfab.spec import dump_spec, parse_spec

PRIORITIES = {"low": 2, "normal": 4, "high": 7, "urgent": 9}
_COMMAND = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Caller:
    """Who submits: a user and the teams they may charge (the first is their default)."""

    user: str
    teams: tuple[str, ...]


class SubmitRequest(BaseModel):
    """The body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    cwd: str
    spec_yaml: str | None = None
    args: list[str] = Field(default_factory=list)
    gpus: int = 0
    cpus: int = 1
    mem_bytes: int = 0
    priority: str | int = "normal"
    time_limit_s: float | None = None
    after: list[int] = Field(default_factory=list)
    retries: int = 0
    team: str | None = None
    run_dir: str | None = None
    hold: bool = False
    sleep_s: float | None = None


def parse_priority(value: str | int) -> int:
    """``low|normal|high|urgent`` or 0..9 -> the policy's 0..9."""
    if isinstance(value, int) or str(value).isdigit():
        number = int(value)
        if 0 <= number <= 9:
            return number
    elif str(value) in PRIORITIES:
        return PRIORITIES[str(value)]
    names = "|".join(PRIORITIES)
    raise TensorfabError(f"priority {value!r}: use {names} or a number 0-9")


def choose_team(caller: Caller, team: str | None) -> str:
    """The team to charge: the one asked for if the caller may charge it, else their first."""
    if team is None:
        return caller.teams[0] if caller.teams else "default"
    if team not in caller.teams:
        allowed = ", ".join(caller.teams) or "none"
        raise TensorfabError(f"team {team!r}: {caller.user} may charge only {allowed}")
    return team


def _check_numbers(req: SubmitRequest) -> None:
    if req.gpus < 0:
        raise TensorfabError(f"gpus {req.gpus}: must be 0 or more")
    if req.cpus < 1:
        raise TensorfabError(f"cpus {req.cpus}: must be at least 1")
    if req.mem_bytes < 0:
        raise TensorfabError(f"mem {req.mem_bytes}: must be 0 or more")
    if req.retries < 0:
        raise TensorfabError(f"retries {req.retries}: must be 0 or more")
    if req.time_limit_s is not None and not req.time_limit_s > 0:
        raise TensorfabError(f"time {req.time_limit_s}: must be above 0 seconds")
    if not Path(req.cwd).is_absolute():
        raise TensorfabError(f"cwd {req.cwd!r}: must be an absolute path")


def resolve_train_spec(req: SubmitRequest) -> tuple[str, str]:
    """The spec to store (runs under an absolute run directory) and that directory."""
    try:
        raw = yaml.safe_load(req.spec_yaml or "")
    except yaml.YAMLError as exc:
        raise TensorfabError(f"request: spec_yaml: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise TensorfabError("request: spec_yaml: expected a mapping of settings")
    spec = parse_spec(raw, source="request spec_yaml")
    if req.run_dir is not None and not req.run_dir.strip():
        raise TensorfabError("run_dir: empty (leave --run-dir out for runs/<name>)")
    if req.run_dir:
        target = Path(req.cwd) / req.run_dir
    else:
        target = Path(req.cwd) / spec.output.runs_dir / (spec.output.name or spec.name)
    target = Path(target.as_posix())
    overrides = [f"output.runs_dir={target.parent}", f"output.name={target.name}"]
    spec = parse_spec(spec.model_dump(mode="json"), overrides, source="request spec_yaml")
    return dump_spec(spec), str(target)


def check_run_dir_creatable(run_dir: str) -> None:
    """Refuse at submit a run directory the job could only fail on later: one that exists
    (a file too), one under a file, one whose folder cannot be made (``/proc/x``, no write
    permission). The probe makes the directory and its missing parents, then removes what
    it made: nothing is left behind, and the answer is the filesystem's, not a guess."""
    target = Path(run_dir)
    if target.exists() or target.is_symlink():
        raise TensorfabError(
            f"{run_dir}: run directory already exists; set output.name (--set "
            "output.name=NEW) or --run-dir to start another run"
        )
    made: list[Path] = []
    try:
        for folder in [*reversed(target.parents), target]:
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
    except OSError as exc:
        raise TensorfabError(
            f"{run_dir}: cannot make the run directory ({exc.strerror}: {exc.filename})"
        ) from None
    finally:
        for folder in reversed(made):
            folder.rmdir()


def _command_args(req: SubmitRequest, allow_sleep: bool) -> list[str]:
    if req.kind == "sleep":
        if not allow_sleep:
            raise TensorfabError("kind 'sleep': only a daemon started with --test-jobs runs it")
        if req.sleep_s is None or not 0 <= req.sleep_s <= 3600:
            raise TensorfabError("sleep_s: give 0 to 3600 seconds")
        return [str(req.sleep_s)]
    if not req.args or not _COMMAND.fullmatch(req.args[0]):
        raise TensorfabError("args: give a tensorfab command, e.g. -- tensorfab export runs/x")
    if req.args[0] == "jobs":
        raise TensorfabError("args: a job cannot run 'tensorfab jobs'")
    return list(req.args)


def build_job(
    req: SubmitRequest, caller: Caller, node: Node, allow_sleep: bool = False
) -> tuple[NewJob, str | None]:
    """The checked job to store and its spec snapshot (train jobs only)."""
    if req.kind not in KINDS:
        raise TensorfabError(f"kind {req.kind!r}: use one of {', '.join(KINDS)}")
    _check_numbers(req)
    team = choose_team(caller, req.team)
    spec_text, run_dir, args = None, None, []
    if req.kind == "train":
        spec_text, run_dir = resolve_train_spec(req)
    else:
        args = _command_args(req, allow_sleep)
    job = NewJob(
        user=caller.user,
        team=team,
        kind=req.kind,
        argv=args,
        cwd=req.cwd,
        run_dir=run_dir,
        priority=parse_priority(req.priority),
        gpus=req.gpus,
        cpus=req.cpus,
        mem_bytes=req.mem_bytes,
        time_limit_s=req.time_limit_s,
        after=list(req.after),
        retries=req.retries,
        hold=req.hold,
    )
    _check_fits(job, node)
    return job, spec_text


def _check_fits(job: NewJob, node: Node) -> None:
    probe = Job(
        id=0,
        user=job.user,
        team=job.team,
        priority=job.priority,
        gpus=job.gpus,
        cpus=job.cpus,
        mem_bytes=job.mem_bytes,
        time_limit_s=job.time_limit_s or math.inf,
        submit_time=0.0,
        state="queued",
    )
    why = fits_anywhere(probe, (node,))
    if why:
        raise TensorfabError(why.replace("job 0: ", "this node cannot run the job: "))


def request_from_json(body: Any) -> SubmitRequest:
    """A :class:`SubmitRequest` from a JSON body; unknown or mistyped fields are named."""
    try:
        return SubmitRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise TensorfabError(f"request: {where}: {reason}") from None
