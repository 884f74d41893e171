"""Fairness post-processing: per-group thresholds equalising selection rates, as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tensorfab.errors import TensorfabError
from tensorfab.tasks.tabular_fairness import apply_thresholds, fit_thresholds


def test_thresholds_equalise_selection_rates() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.4, 0.3, 0.1])
    groups = ["a"] * 4 + ["b"] * 4
    # At 0.5, a selects 3 of 4 and b 1 of 4: overall 0.5, so each group gets its top 2.
    rule = fit_thresholds(scores, groups)
    assert rule["target_rate"] == 0.5
    assert rule["groups"]["a"] == {"high": 0.8, "low": 0.7, "p": 0.0}
    assert rule["groups"]["b"] == {"high": 0.4, "low": 0.3, "p": 0.0}
    assert json.loads(json.dumps(rule)) == rule  # plain JSON, no pickle
    assert apply_thresholds(rule, scores, groups).tolist() == [1, 1, 0, 0, 1, 1, 0, 0]


def test_mixing_between_two_thresholds() -> None:
    # Rate 1/2 of three examples: the top one, and the second with probability 0.5.
    rule = fit_thresholds(np.array([0.9, 0.6, 0.1, 0.3]), ["c", "c", "c", "d"])
    assert rule["groups"]["c"] == {"high": 0.9, "low": 0.6, "p": 0.5}
    many = np.tile([0.9, 0.6, 0.1], 2000)
    decided = apply_thresholds(rule, many, ["c"] * len(many)).reshape(-1, 3)
    assert decided[:, 0].all() and not decided[:, 2].any()
    assert decided[:, 1].mean() == pytest.approx(0.5, abs=0.03)
    again = apply_thresholds(rule, many, ["c"] * len(many)).reshape(-1, 3)
    assert (again == decided).all()  # seeded: predict repeats itself


def test_unknown_group_and_constraint_are_clear_errors() -> None:
    rule = fit_thresholds(np.array([0.9, 0.1]), ["a", "b"], sensitive="sex")
    with pytest.raises(TensorfabError, match=r"example 0: sex='x' was not seen .*known: a, b"):
        apply_thresholds(rule, np.array([0.5]), ["x"])
    with pytest.raises(TensorfabError, match="'equalized_odds' is not implemented"):
        fit_thresholds(np.array([0.9]), ["a"], constraint="equalized_odds")
