"""The scheduling policy of ``tensorfab jobs``: a pure function from (state, clock) to actions.

:func:`decide` reads a snapshot of the cluster (:class:`State`) and the time ``now`` and
returns what to do next: start queued jobs, preempt, stop or cancel running/queued ones. It
does no I/O, reads no clock, starts no process and keeps no state between calls, so the
daemon and the simulator (``jobs/simulate.py``) run the very same decisions, and the tests
drive it with hand-built states.

What the caller (daemon or simulator) must do
---------------------------------------------
1. Pass only live jobs in ``State.jobs`` (queued, held, running, preempted) and every ended
   job that a live job names in ``after`` in ``State.finished`` (id -> "succeeded" |
   "failed" | "cancelled"). A dependency found in neither is unknown: the job is cancelled.
2. Keep fair-share usage current: before each call, ``usage = decay_usage(usage, elapsed,
   config.usage_half_life_s)`` for the time since the last call, then
   ``usage = charge(usage, team, gpus * elapsed)`` for every job that held GPUs during that
   time (``gpus`` = the devices it holds, all nodes). ``State.usage`` is then "as of now".
3. Apply the returned actions in order:

   * :class:`Stop` and :class:`Preempt`: send SIGTERM, SIGKILL after ``config.grace_s``;
     put the job in ``State.stopping`` until its process has ended (its GPUs, cores and
     memory stay taken until then). A preempted job goes back to the queue with state
     ``"preempted"`` and ``queued_since`` = the time it stopped; a stopped job (time limit)
     ends ``"failed"``.
   * :class:`Start`: run the job on ``node`` with exactly ``devices`` (CUDA_VISIBLE_DEVICES)
     and ``cores`` (CPU affinity); a job wider than one node also gets ``extra`` nodes.
     From then on pass it as running with ``start_time``, ``node``, ``devices``, ``cores``
     and ``extra`` filled in.
   * :class:`Cancel`: the job never runs; it ends ``"cancelled"``.

4. Call again whenever something changed (a job submitted, ended, stopped) and at the next
   time limit. One call costs tens of milliseconds with 10,000 queued jobs on 1,024 GPUs
   (``benchmarks/jobs_policy.py`` measures it).

``time_limit_s`` counts from ``start_time``: for a job resumed after preemption, pass the
time it has left (its limit minus what it already ran), so a resumed job gets no new budget.

The rules, in the order they apply
----------------------------------
* Running jobs past ``start_time + time_limit_s`` get :class:`Stop` (unless already stopping).
* Queued/held jobs whose dependency failed, was cancelled or is unknown get :class:`Cancel`;
  a job whose dependencies have not all succeeded waits; ``"held"`` jobs never start.
* The queue order: first jobs waiting longer than ``max_wait_s`` (ageing, oldest first),
  then jobs that stay within their team's GPU quota, then the policy: ``fifo`` (queue time),
  ``priority`` (priority class, then queue time) or ``fair`` (priority class, then the team's
  fair-share factor ``2 ** -(usage_fraction / share_fraction)`` as Slurm's classic
  multifactor plugin computes it, then queue time). Ties go to the lower job id.
  The fair factor is taken on *projected* usage: the decayed usage passed in, plus each
  running job's GPUs times the time it has left (to its limit, at most
  ``fair_lookahead_s``), and it is updated as the pass starts jobs, so a team that was
  behind gets its turn without taking every free GPU at once.
* Jobs start in that order while they fit. A job that does not fit may preempt (below).
  The first job that can neither start nor preempt is the *head*: without backfill nothing
  after it starts; with backfill (EASY) it gets a reservation at the earliest time running
  jobs' ``start_time + time_limit_s`` free enough for it, and a later job starts only if it
  ends before that time or uses resources the reservation leaves over (or another node).
  Running jobs with no time limit never free anything in this estimate, so a head blocked
  by them gets no reservation and nothing backfills (give ``--time`` to let small jobs in);
  a job in its grace period counts as ending ``grace_s`` from now.
* Preemption (``config.preemption``): a job that cannot start may take the resources of
  running *preemptible* jobs that either have a lower priority (not under ``fifo``) or belong
  to a team over its quota while the job's team is within it (quota reclaim; with quotas
  set, a team without one has a quota of 0, so all it runs is borrowed). On one node,
  the fewest victims are chosen, then the youngest; jobs already stopping count as freeing.
  The job then waits for them (its resources are held, so nothing else takes them).
  Only jobs ahead of the head preempt; a job wider than one node does not preempt.
* Placement: a job gets all its GPUs on one node at once (gang) or waits; the node that
  leaves the fewest GPUs free (best fit) wins, ties by node order. Where ``gpu_distance`` is
  known, the set of free GPUs with the smallest largest pairwise distance is taken. Cores:
  the lowest free ids. Memory: the request must fit what running jobs leave of the node.
* A job asking for more GPUs than the largest node has takes whole idle nodes (all their
  GPUs and cores, its memory request per node), as few as give it enough GPUs: the first
  goes in ``Start.node/devices/cores``, the rest in ``Start.extra``.
"""

from __future__ import annotations

from tensorfab.jobs.fairshare import charge, decay_usage
from tensorfab.jobs.policy_types import (
    POLICIES,
    Action,
    Cancel,
    Job,
    Node,
    Placement,
    PolicyConfig,
    Preempt,
    Start,
    State,
    Stop,
    fits_anywhere,
    job_end,
)
from tensorfab.jobs.schedule import schedule

__all__ = [
    "Action",
    "Cancel",
    "Job",
    "Node",
    "Placement",
    "PolicyConfig",
    "Preempt",
    "Start",
    "State",
    "Stop",
    "charge",
    "decay_usage",
    "decide",
    "fits_anywhere",
    "job_end",
]


def decide(state: State, now: float, config: PolicyConfig) -> list[Action]:
    """The actions to take at ``now``: stops, cancels, then starts and preemptions in order."""
    if config.policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {config.policy!r}")
    return schedule(state, now, config)
