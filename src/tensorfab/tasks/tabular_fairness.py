"""Fairness post-processing: per-group randomised thresholds on the positive-class score.

``train.fairness`` fits one rule per group on the validation split's scores and labels:

- ``demographic_parity``: a selection rate per group, chosen for the best validation
  accuracy among the rates whose spread (max - min) is at most ``1 - cut`` of the
  unmitigated spread (``cut: 1.0`` equalises the rates exactly);
- ``equalized_odds`` (Hardt, Price and Srebro 2016, as Fairlearn's ``ThresholdOptimizer``):
  every group gets the same (FPR, TPR) point, the best for accuracy under the lowest of the
  groups' ROC convex hulls; a group reaches it by mixing two thresholds of its hull and, where
  its hull lies above the point, with a constant rate (the ROC diagonal).

A group's rule is ``{high, low, p, ignore, constant}``: a score ``>= high`` is selected, one in
``[low, high)`` with probability ``p``; then, with probability ``ignore``, the decision is
replaced by a coin selecting with probability ``constant``. So every example has one
probability of selection, and one uniform draw per example decides it. Scores are
probabilities: a threshold of 2.0 selects nothing, -1.0 everything (plain JSON, no infinity).
The rule is stored in the model package as JSON and applied outside the ONNX graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tensorfab.errors import TensorfabError

CONSTRAINTS = ("demographic_parity", "equalized_odds")
FILE = "fairness.json"
DEFAULT_CUT = 0.8  # on validation; a margin over the >= 70 % cut wanted on unseen data
NOTHING, EVERYTHING = 2.0, -1.0  # thresholds beyond any probability
X_GRID = 10_001  # FPR points searched for equalized odds (plus every hull vertex)


# --- one group's rule ---------------------------------------------------------------------
def _rule(high: float, low: float, p: float, ignore: float = 0.0, constant: float = 0.0) -> dict:
    return {"high": high, "low": low, "p": p, "ignore": ignore, "constant": constant}


def _group_rule(scores: np.ndarray, rate: float) -> dict[str, float]:
    """Thresholds selecting ``rate`` of ``scores`` in expectation."""
    ordered = np.sort(scores)[::-1]  # descending
    wanted = rate * len(ordered)
    k = min(int(np.floor(wanted + 1e-9)), len(ordered))
    high = float(ordered[k - 1]) if k > 0 else NOTHING  # selects the top k
    low = float(ordered[k]) if k < len(ordered) else EVERYTHING  # ... and the next one
    return _rule(high, low, float(max(wanted - k, 0.0)))


def selection_probability(rule: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Each score's probability of being selected under one group's ``rule``."""
    scores = np.asarray(scores, dtype=float)
    band = np.where(scores >= rule["high"], 1.0, np.where(scores >= rule["low"], rule["p"], 0.0))
    ignore = rule.get("ignore", 0.0)
    return (1.0 - ignore) * band + ignore * rule.get("constant", 0.0)


# --- demographic parity -------------------------------------------------------------------
def _correct_by_count(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[k] = correct decisions when the top k scores are selected (k = 0 .. n)."""
    y = labels[np.argsort(-scores, kind="stable")]
    return (y == 0).sum() + np.concatenate([[0], np.cumsum(2 * y - 1)])


def _best_in(correct: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """(correct, k) best over fractional k in [lo, hi]: at an integer inside or an end."""
    ks = np.arange(int(np.ceil(lo - 1e-9)), int(np.floor(hi + 1e-9)) + 1)
    candidates = np.concatenate([[lo, hi], ks[(ks >= 0) & (ks < len(correct))]])
    values = np.interp(candidates, np.arange(len(correct)), correct)
    i = int(np.argmax(values))
    return float(values[i]), float(candidates[i])


def _parity_rates(parts: dict[str, tuple[np.ndarray, np.ndarray]], gap: float) -> dict:
    """Rates per group within a band of width ``gap``, best for accuracy; the band's lower
    end is searched over the points where a group's band end meets a whole example."""
    curves = {g: _correct_by_count(s, y) for g, (s, y) in parts.items()}
    top = max(1.0 - gap, 0.0)
    starts = [np.array([0.0, top])]
    for s, _ in parts.values():
        k = np.arange(len(s) + 1) / len(s)
        starts += [k, k - gap]
    best: tuple[float, dict] = (-1.0, {})
    for lo in np.unique(np.clip(np.concatenate(starts), 0.0, top)):
        picks = {
            g: _best_in(c, lo * (len(c) - 1), (lo + gap) * (len(c) - 1)) for g, c in curves.items()
        }
        total = sum(v for v, _ in picks.values())
        if total > best[0] + 1e-9:
            best = (total, {g: k / (len(curves[g]) - 1) for g, (_, k) in picks.items()})
    return best[1]


def _fit_parity(parts: dict, cut: float) -> tuple[dict, dict]:
    rates = {g: float((s >= 0.5).mean()) for g, (s, _) in parts.items()}
    gap = (1.0 - cut) * (max(rates.values()) - min(rates.values()))
    chosen = _parity_rates(parts, gap)
    rules = {g: _group_rule(parts[g][0], r) for g, r in chosen.items()}
    return rules, {"cut": cut, "unmitigated_rates": rates, "max_gap": gap, "rates": chosen}


# --- equalized odds -----------------------------------------------------------------------
def _roc_hull(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """The upper convex hull of "select score >= t": FPR, TPR and threshold per vertex."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last example of each distinct score
    tpr = np.r_[0.0, np.cumsum(y)[last] / y.sum()]
    fpr = np.r_[0.0, np.cumsum(1 - y)[last] / (1 - y).sum()]
    thresholds = [NOTHING, *s[last].tolist()]
    hull: list[int] = []
    for i in range(len(fpr)):
        if hull and fpr[hull[-1]] == fpr[i]:
            hull.pop()  # the same FPR: keep the higher TPR (the later point)
        while len(hull) >= 2 and _not_right_turn(fpr, tpr, hull[-2], hull[-1], i):
            hull.pop()
        hull.append(i)
    return fpr[hull], tpr[hull], [thresholds[i] for i in hull]


def _not_right_turn(x: np.ndarray, y: np.ndarray, o: int, a: int, b: int) -> bool:
    return (x[a] - x[o]) * (y[b] - y[o]) - (y[a] - y[o]) * (x[b] - x[o]) >= 0


def _odds_rule(hull: tuple, x: float, y: float) -> dict[str, float]:
    """A group's rule reaching (FPR x, TPR y) under its hull: two thresholds, then the
    diagonal's constant rate x for the part of the hull above y."""
    hx, hy, thr = hull
    i = min(int(np.searchsorted(hx, x, side="right")) - 1, len(hx) - 1)
    if hx[i] == x or i == len(hx) - 1:
        base = _rule(thr[i], thr[i], 0.0)
    else:
        base = _rule(thr[i], thr[i + 1], float((x - hx[i]) / (hx[i + 1] - hx[i])))
    top = float(np.interp(x, hx, hy))
    ignore = (top - y) / (top - x) if top - x > 1e-12 else 0.0
    return {**base, "ignore": float(min(max(ignore, 0.0), 1.0)), "constant": float(x)}


def _fit_odds(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    for g, (_, y) in parts.items():
        if y.min() == y.max():
            raise TensorfabError(
                f"train.fairness: equalized_odds needs both classes in every group; "
                f"the validation rows of {g!r} have only one"
            )
    hulls = {g: _roc_hull(s, y) for g, (s, y) in parts.items()}
    xs = np.unique(np.concatenate([np.linspace(0, 1, X_GRID), *[h[0] for h in hulls.values()]]))
    envelope = np.min([np.interp(xs, h[0], h[1]) for h in hulls.values()], axis=0)
    pos = sum(int(y.sum()) for _, y in parts.values())
    neg = sum(len(y) for _, y in parts.values()) - pos
    best = int(np.argmax(pos * envelope + neg * (1 - xs)))
    x, y = float(xs[best]), float(envelope[best])
    rules = {g: _odds_rule(h, x, y) for g, h in hulls.items()}
    return rules, {"fpr": x, "tpr": y}


# --- the rule of a model ------------------------------------------------------------------
def fit_thresholds(
    scores: np.ndarray,
    groups: Sequence[str],
    labels: np.ndarray,
    constraint: str = "demographic_parity",
    sensitive: str = "sex",
    cut: float = DEFAULT_CUT,
) -> dict[str, Any]:
    """Per-group rules for ``constraint``, fitted on ``scores`` (positive-class
    probabilities) and 0/1 ``labels`` of validation rows grouped by ``groups``."""
    if constraint not in CONSTRAINTS:
        raise TensorfabError(
            f"train.fairness.constraint: {constraint!r} is not implemented "
            f"(implemented: {', '.join(CONSTRAINTS)})"
        )
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=np.int64)
    names = np.asarray([str(g) for g in groups])
    parts = {str(g): (scores[names == g], labels[names == g]) for g in np.unique(names)}
    if constraint == "equalized_odds":
        rules, fitted = _fit_odds(parts)
    else:
        rules, fitted = _fit_parity(parts, cut)
    return {"constraint": constraint, "sensitive": sensitive, **fitted, "groups": rules}


def apply_thresholds(
    rule: dict[str, Any],
    scores: np.ndarray,
    groups: Sequence[str],
    draws: np.ndarray | None = None,
) -> np.ndarray:
    """0/1 decisions under ``rule``; an unseen group is a TensorfabError naming it.

    ``draws``: a uniform number per example (default: a fixed seed, 0); the task passes
    draws hashed from each example, so every path decides an example the same way.
    """
    scores = np.asarray(scores, dtype=float)
    if draws is None:
        draws = np.random.default_rng(rule.get("seed", 0)).random(len(scores))
    chance = np.zeros(len(scores))
    for i, (score, group) in enumerate(zip(scores, groups, strict=True)):
        g = rule["groups"].get(str(group))
        if g is None:
            known = ", ".join(rule["groups"])
            raise TensorfabError(
                f"example {i}: {rule['sensitive']}={group!r} was not seen when the fairness "
                f"thresholds were fitted (known: {known})"
            )
        chance[i] = selection_probability(g, np.array([score]))[0]
    return (np.asarray(draws) < chance).astype(np.int64)
