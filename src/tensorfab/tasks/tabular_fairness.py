"""Fairness post-processing: per-group thresholds on the positive-class score.

``train.fairness: {constraint: demographic_parity, sensitive: sex}`` fits, on validation
scores, one threshold per group so that every group is selected at the same rate (the
rate the unmitigated model selects overall). Where the exact rate falls between two
examples, the group mixes two thresholds: a score in ``[low, high)`` is selected with
probability ``p`` (randomised, as the constraint needs; seeded, so ``predict`` repeats).
The rule is plain JSON stored in the model package and applied outside the ONNX graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tensorfab.errors import TensorfabError

CONSTRAINTS = ("demographic_parity",)
FILE = "fairness.json"


def _group_rule(scores: np.ndarray, rate: float) -> dict[str, float]:
    """Thresholds selecting ``rate`` of ``scores`` in expectation."""
    ordered = np.sort(scores)[::-1]  # descending
    wanted = rate * len(ordered)
    k = int(np.floor(wanted))
    high = float(ordered[k - 1]) if k > 0 else float("inf")  # selects the top k
    low = float(ordered[k]) if k < len(ordered) else float("-inf")  # ... and the next one
    return {"high": high, "low": low, "p": float(wanted - k)}


def fit_thresholds(
    scores: np.ndarray,
    groups: Sequence[str],
    constraint: str = "demographic_parity",
    sensitive: str = "sex",
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group rules equalising the selection rate at the overall rate at 0.5."""
    if constraint not in CONSTRAINTS:
        raise TensorfabError(
            f"train.fairness.constraint: {constraint!r} is not implemented "
            f"(implemented: {', '.join(CONSTRAINTS)})"
        )
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(groups)
    rate = float((scores >= 0.5).mean())
    rules = {str(g): _group_rule(scores[labels == g], rate) for g in np.unique(labels)}
    return {
        "constraint": constraint,
        "sensitive": sensitive,
        "target_rate": rate,
        "seed": seed,
        "groups": rules,
    }


def apply_thresholds(
    rule: dict[str, Any],
    scores: np.ndarray,
    groups: Sequence[str],
    draws: np.ndarray | None = None,
) -> np.ndarray:
    """0/1 decisions under ``rule``; an unseen group is a TensorfabError naming it.

    ``draws``: a uniform number per example for the mixed band (default: seeded by the rule).
    """
    scores = np.asarray(scores, dtype=float)
    if draws is None:
        draws = np.random.default_rng(rule.get("seed", 0)).random(len(scores))
    out = np.zeros(len(scores), dtype=np.int64)
    for i, (score, group) in enumerate(zip(scores, groups, strict=True)):
        g = rule["groups"].get(str(group))
        if g is None:
            known = ", ".join(rule["groups"])
            raise TensorfabError(
                f"example {i}: {rule['sensitive']}={group!r} was not seen when the fairness "
                f"thresholds were fitted (known: {known})"
            )
        out[i] = score >= g["high"] or (score >= g["low"] and draws[i] < g["p"])
    return out
