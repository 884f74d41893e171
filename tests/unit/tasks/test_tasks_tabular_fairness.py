"""Fairness post-processing: per-group randomised thresholds for demographic parity (with a
required cut of the gap, at the least accuracy cost) and for equalized odds, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.tasks.tabular_classification import build_tabular_classification
from tensorfab.tasks.tabular_fairness import (
    FILE,
    apply_thresholds,
    fit_thresholds,
    selection_probability,
)

# Group a: rates at 0.5 are a 3/4, b 1/4 (gap 0.5). Correct decisions when the top k of a
# are selected: 2, 3, 4, 3, 2 (k = 0..4); of b: 3, 4, 3, 2, 1.
PARITY_SCORES = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.4, 0.3, 0.1])
PARITY_LABELS = np.array([1, 1, 0, 0, 1, 0, 0, 0])
PARITY_GROUPS = ["a"] * 4 + ["b"] * 4

# Equalized odds. a: positives 0.9, 0.8, negatives 0.3, 0.2 (separable: hull (0,1)-(1,1)).
# b: positives 0.7, 0.4, negatives 0.6, 0.1, 0.05: hull (0,.5)-(1/3,1)-(1,1). The lower
# envelope is b's hull; accuracy 4 TPR + 5 (1 - FPR) is best at (1/3, 1) (7.33 of 9; 7 at
# (0, .5)). b reaches it with its threshold 0.4; a mixes 0.8 and 0.2 with p = 1/3.
ODDS_SCORES = np.array([0.9, 0.8, 0.3, 0.2, 0.7, 0.4, 0.6, 0.1, 0.05])
ODDS_LABELS = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0])
ODDS_GROUPS = ["a"] * 4 + ["b"] * 5


def _rates(decided: np.ndarray, labels: np.ndarray, groups: list[str]) -> dict:
    g = np.array(groups)
    return {
        k: (decided[(g == k) & (labels == 1)].mean(), decided[(g == k) & (labels == 0)].mean())
        for k in sorted(set(groups))
    }


def test_parity_with_cut_one_equalises_rates_at_the_best_common_rate() -> None:
    rule = fit_thresholds(PARITY_SCORES, PARITY_GROUPS, PARITY_LABELS, cut=1.0)
    # common rate r: correct 5 (r=0), 7 (1/4 .. 1/2), 5 (3/4): the first best, 1/4
    assert rule["rates"] == {"a": pytest.approx(0.25), "b": pytest.approx(0.25)}
    assert rule["unmitigated_rates"] == {"a": 0.75, "b": 0.25} and rule["max_gap"] == 0.0
    assert rule["groups"]["a"] == {
        "high": 0.9,
        "low": 0.8,
        "p": 0.0,
        "ignore": 0.0,
        "constant": 0.0,
    }
    assert json.loads(json.dumps(rule)) == rule  # plain JSON, no pickle
    assert apply_thresholds(rule, PARITY_SCORES, PARITY_GROUPS).tolist() == [
        1, 0, 0, 0, 1, 0, 0, 0,
    ]  # fmt: skip


def test_parity_cut_trades_the_least_accuracy_for_the_required_gap() -> None:
    # cut 0.5: rates may differ by 0.25; a at 1/2 and b at 1/4 decide all 8 rows correctly
    rule = fit_thresholds(PARITY_SCORES, PARITY_GROUPS, PARITY_LABELS, cut=0.5)
    assert rule["max_gap"] == pytest.approx(0.25)
    assert rule["rates"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.25)}
    decided = apply_thresholds(rule, PARITY_SCORES, PARITY_GROUPS)
    assert decided.tolist() == PARITY_LABELS.tolist()


def test_mixing_between_two_thresholds() -> None:
    # A group's rule for a rate between two examples: rate 1/2 of three scores selects the
    # top one, and the next with probability 0.5.
    from tensorfab.tasks.tabular_fairness import _group_rule

    rule = {"sensitive": "s", "groups": {"c": _group_rule(np.array([0.9, 0.6, 0.1]), 0.5)}}
    assert rule["groups"]["c"] == {
        "high": 0.9,
        "low": 0.6,
        "p": 0.5,
        "ignore": 0.0,
        "constant": 0.0,
    }
    many = np.tile([0.9, 0.6, 0.1], 2000)
    decided = apply_thresholds(rule, many, ["c"] * len(many)).reshape(-1, 3)
    assert decided[:, 0].all() and not decided[:, 2].any()
    assert decided[:, 1].mean() == pytest.approx(0.5, abs=0.03)
    again = apply_thresholds(rule, many, ["c"] * len(many)).reshape(-1, 3)
    assert (again == decided).all()  # seeded: predict repeats itself


def test_equalized_odds_thresholds_and_mixing_by_hand() -> None:
    rule = fit_thresholds(ODDS_SCORES, ODDS_GROUPS, ODDS_LABELS, "equalized_odds")
    assert rule["fpr"] == pytest.approx(1 / 3) and rule["tpr"] == pytest.approx(1.0)
    a, b = rule["groups"]["a"], rule["groups"]["b"]
    assert (a["high"], a["low"], a["p"], a["ignore"]) == (0.8, 0.2, pytest.approx(1 / 3), 0.0)
    assert (b["high"], b["p"], b["ignore"]) == (0.4, 0.0, 0.0)
    # expected TPR and FPR per group are equal: (1, 1/3)
    for g, (s, y) in {
        "a": (ODDS_SCORES[:4], ODDS_LABELS[:4]),
        "b": (ODDS_SCORES[4:], ODDS_LABELS[4:]),
    }.items():
        chance = selection_probability(rule["groups"][g], s)
        assert chance[y == 1].mean() == pytest.approx(1.0)
        assert chance[y == 0].mean() == pytest.approx(1 / 3)
    assert json.loads(json.dumps(rule)) == rule


def test_equalized_odds_difference_of_the_decisions_is_small() -> None:
    # Unmitigated (>= 0.5): a TPR 1, FPR 0; b TPR 1/2, FPR 1/3: EO difference 1/2. Mitigated,
    # the expected rates are equal; 600 copies give each group's FPR a standard deviation
    # under sqrt(2/9 / 1200) = 0.014, so a difference under 0.06 is a > 4-sigma bound.
    n = 600
    scores, labels = np.tile(ODDS_SCORES, n), np.tile(ODDS_LABELS, n)
    groups = ODDS_GROUPS * n
    rule = fit_thresholds(scores, groups, labels, "equalized_odds")
    plain = _rates((scores >= 0.5).astype(int), labels, groups)
    assert max(abs(plain["a"][0] - plain["b"][0]), abs(plain["a"][1] - plain["b"][1])) == 0.5
    mixed = _rates(apply_thresholds(rule, scores, groups), labels, groups)
    assert abs(mixed["a"][0] - mixed["b"][0]) < 0.06 and abs(mixed["a"][1] - mixed["b"][1]) < 0.06


def test_diagonal_mixing_where_a_hull_lies_above_the_point() -> None:
    # a separable and b at chance-ish: the shared point lies under a's hull, so a mixes in
    # a coin at the point's FPR with probability `ignore`
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 0, 1])
    groups = ["a", "a", "b", "b", "b", "b"]
    rule = fit_thresholds(scores, groups, labels, "equalized_odds")
    x, y = rule["fpr"], rule["tpr"]
    for g in ("a", "b"):
        chance = selection_probability(rule["groups"][g], scores[np.array(groups) == g])
        lab = labels[np.array(groups) == g]
        assert chance[lab == 1].mean() == pytest.approx(y)
        assert chance[lab == 0].mean() == pytest.approx(x)
    assert rule["groups"]["a"]["ignore"] > 0 and rule["groups"]["a"]["constant"] == x


def test_round_trip_through_the_package(tmp_path: Path) -> None:
    rule = fit_thresholds(ODDS_SCORES, ODDS_GROUPS, ODDS_LABELS, "equalized_odds", "sex")
    rule = {**rule, "positive": "yes"}
    (tmp_path / FILE).write_text(json.dumps(rule))
    task = build_tabular_classification(
        ["no", "yes"], [], {"sex": ["a", "b"]}, [], [], package_dir=str(tmp_path)
    )
    assert task.fairness == rule
    # 300 copies, each shifted up by a different (i + 1) e-4 (crossing no threshold), so that
    # the draws, hashed from each row's content, differ between copies
    n = 300
    shift = np.repeat((np.arange(n) + 1) * 1e-4, len(ODDS_SCORES))
    p = torch.tensor(np.tile(ODDS_SCORES, n) + shift)
    logits = torch.log(torch.stack([1 - p, p], dim=1))
    codes = torch.tensor([[1 if g == "a" else 2] for g in ODDS_GROUPS] * n)
    decided = task.decide(logits, codes)
    assert (task.decide(logits, codes) == decided).all()  # hashed draws: repeatable
    assert (task.decide(logits.flip(0), codes.flip(0))[::-1] == decided).all()  # any order
    rates = _rates(decided, np.tile(ODDS_LABELS, n), ODDS_GROUPS * n)
    # a's negatives (0.3, 0.2) are selected with probability 1/3, b's 0.6 always, 0.1 never
    assert rates["a"][0] == 1.0 and rates["b"][0] == 1.0
    assert rates["a"][1] == pytest.approx(1 / 3, abs=0.06) and rates["b"][1] == pytest.approx(1 / 3)


def test_unknown_group_constraint_and_one_class_groups_are_clear_errors() -> None:
    rule = fit_thresholds(np.array([0.9, 0.1]), ["a", "b"], np.array([1, 0]), sensitive="sex")
    with pytest.raises(TensorfabError, match=r"example 0: sex='x' was not seen .*known: a, b"):
        apply_thresholds(rule, np.array([0.5]), ["x"])
    with pytest.raises(TensorfabError, match="'x' is not implemented"):
        fit_thresholds(np.array([0.9]), ["a"], np.array([1]), constraint="x")
    with pytest.raises(TensorfabError, match="validation rows of 'b' have only one"):
        fit_thresholds(
            np.array([0.9, 0.1, 0.5]), ["a", "a", "b"], np.array([1, 0, 1]), "equalized_odds"
        )
