"""Fair-share bookkeeping: decayed GPU usage per team and the factor that orders teams.

Usage is GPU-seconds that lose half their weight every ``half_life_s`` (Slurm's
PriorityDecayHalfLife). A team's factor is ``2 ** -(U / S)`` with ``U`` its fraction of all
teams' usage and ``S`` its fraction of all teams' shares, as Slurm's classic fair-share factor:
1.0 for a team that used nothing, 0.5 for one that used exactly its share, towards 0 above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def decay_usage(
    usage: Mapping[str, float], elapsed_s: float, half_life_s: float
) -> dict[str, float]:
    """``usage`` after ``elapsed_s`` more seconds of exponential decay with ``half_life_s``."""
    if elapsed_s < 0:
        raise ValueError(f"elapsed_s must be >= 0, got {elapsed_s}")
    if half_life_s <= 0:
        raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
    keep = 0.5 ** (elapsed_s / half_life_s)
    return {team: used * keep for team, used in usage.items()}


def charge(usage: Mapping[str, float], team: str, gpu_seconds: float) -> dict[str, float]:
    """``usage`` with ``gpu_seconds`` more for ``team`` (charge after decaying, never before)."""
    if gpu_seconds < 0:
        raise ValueError(f"gpu_seconds must be >= 0, got {gpu_seconds}")
    out = dict(usage)
    out[team] = out.get(team, 0.0) + gpu_seconds
    return out


def share_of(shares: Mapping[str, float], team: str) -> float:
    """A team's configured share; teams not listed get 1.0."""
    return float(shares.get(team, 1.0))


def fair_factors(
    usage: Mapping[str, float], shares: Mapping[str, float], teams: Iterable[str]
) -> dict[str, float]:
    """Each team's fair-share factor in [0, 1]; higher goes first.

    Fractions are taken over ``teams`` (those with jobs or usage), so a team that left long ago
    does not dilute the others' shares.
    """
    teams = sorted(set(teams))
    total_use = sum(max(usage.get(t, 0.0), 0.0) for t in teams)
    total_share = sum(share_of(shares, t) for t in teams)
    factors = {}
    for team in teams:
        share = share_of(shares, team) / total_share if total_share > 0 else 0.0
        used = max(usage.get(team, 0.0), 0.0) / total_use if total_use > 0 else 0.0
        if share <= 0:
            factors[team] = 0.0 if used > 0 else 0.5
        else:
            factors[team] = 2.0 ** (-used / share)
    return factors
