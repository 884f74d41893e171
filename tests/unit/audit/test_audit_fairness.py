"""Fairness metrics by group, against values computed by hand on a twelve-row fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tensorfab.audit.fairness import (
    FairnessInput,
    fairness_report,
    plot_metrics,
    report_markdown,
)
from tensorfab.errors import TensorfabError

pytest.importorskip("fairlearn")

# Women: rows 0-5, men: rows 6-11.
Y_TRUE = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
Y_PRED = np.array([1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0])
PROB = np.array([0.9, 0.4, 0.6, 0.2, 0.1, 0.3, 0.8, 0.7, 0.9, 0.6, 0.3, 0.2])
SEX = ["F"] * 6 + ["M"] * 6
RACE = ["A", "A", "B", "B", "A", "B", "A", "B", "A", "B", "A", "B"]


def _data(**sensitive: list[str]) -> FairnessInput:
    return FairnessInput(Y_TRUE, Y_PRED, PROB, sensitive or {"sex": SEX})


def test_groups_and_gaps_by_hand() -> None:
    report = fairness_report(_data(), n_boot=0)
    women, men = report["groups"]["F"], report["groups"]["M"]
    # Women: correct rows 0, 3, 4, 5; selected 0 and 2; positives 0, 1 (one found);
    # negatives 2-5 (one selected); mean probability 2.5/6 against 2/6 positive.
    assert women == pytest.approx(
        {
            "count": 6,
            "accuracy": 4 / 6,
            "selection_rate": 2 / 6,
            "tpr": 0.5,
            "fpr": 0.25,
            "calibration": 2.5 / 6 - 2 / 6,
        }
    )
    # Men: only row 9 wrong; four selected; all three positives found; one of three
    # negatives selected; mean probability 3.5/6 against 3/6.
    assert men == pytest.approx(
        {
            "count": 6,
            "accuracy": 5 / 6,
            "selection_rate": 4 / 6,
            "tpr": 1.0,
            "fpr": 1 / 3,
            "calibration": 3.5 / 6 - 3 / 6,
        }
    )
    assert report["gaps"] == pytest.approx(
        {
            "demographic_parity_difference": 2 / 6,
            "demographic_parity_ratio": 0.5,
            "equalized_odds_difference": 0.5,  # TPR gap 0.5 > FPR gap 1/12
            "equalized_odds_ratio": 0.5,  # TPR ratio 0.5 < FPR ratio 0.75
        }
    )


def test_gaps_agree_with_fairlearn() -> None:
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
    )

    gaps = fairness_report(_data(), n_boot=0)["gaps"]
    kw = {"sensitive_features": SEX}
    assert gaps["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(Y_TRUE, Y_PRED, **kw)
    )
    assert gaps["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(Y_TRUE, Y_PRED, **kw)
    )
    assert gaps["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(Y_TRUE, Y_PRED, **kw)
    )
    assert gaps["equalized_odds_ratio"] == pytest.approx(equalized_odds_ratio(Y_TRUE, Y_PRED, **kw))


def test_intersections() -> None:
    report = fairness_report(_data(sex=SEX, race=RACE), n_boot=0)
    assert set(report["groups"]) == {"F & A", "F & B", "M & A", "M & B"}
    # Women of group A: rows 0, 1, 4 -> truths 1, 1, 0, predictions 1, 0, 0.
    assert report["groups"]["F & A"] == pytest.approx(
        {
            "count": 3,
            "accuracy": 2 / 3,
            "selection_rate": 1 / 3,
            "tpr": 0.5,
            "fpr": 0.0,
            "calibration": 1.4 / 3 - 2 / 3,
        }
    )


def test_bootstrap_intervals_contain_the_estimate(tmp_path: Path) -> None:
    report = fairness_report(_data(), n_boot=8, seed=1)
    low, high = report["intervals"]["F"]["accuracy"]
    assert low <= 4 / 6 <= high and low < high
    low, high = report["intervals"]["gaps"]["demographic_parity_difference"]
    assert low <= 2 / 6 <= high
    assert fairness_report(_data(), n_boot=8, seed=1)["intervals"] == report["intervals"]
    markdown = report_markdown(report)
    assert (
        "| F | 6 | 0.667 [" in markdown and "| demographic_parity_difference | 0.333 [" in markdown
    )
    pngs = plot_metrics(report, tmp_path)
    assert [p.name for p in pngs] == [
        "fairness-accuracy.png",
        "fairness-selection_rate.png",
        "fairness-tpr.png",
        "fairness-fpr.png",
        "fairness-calibration.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_mismatched_lengths_are_refused() -> None:
    bad = FairnessInput(Y_TRUE, Y_PRED, PROB, {"sex": SEX[:5]})
    with pytest.raises(TensorfabError, match="12 labels but sensitive column 'sex' has 5"):
        fairness_report(bad, n_boot=0)


def test_counterfactual_sentences_and_paired_gaps() -> None:
    from tensorfab.audit.fairness_text import Probe, counterfactual_gaps, probe_sets, sentences

    rows = sentences("gender")
    assert len(rows) == 6 * 10 * 2 * 5  # templates x words x groups x people
    assert rows[0] == Probe(
        "female", 0, "{person} feels {word}.|happy", "My sister feels happy.", 0, 9
    )
    with pytest.raises(TensorfabError, match="'age' is not one of gender, name, name-origin"):
        sentences("age")
    assert set(probe_sets()) == {"gender", "name", "name-origin"}
    # Two pairs: female scores 0.9, 0.6; their male counterparts 0.7, 0.7.
    few = [
        Probe("female", 0, "t", "a", 0, 1),
        Probe("female", 1, "t", "b", 0, 1),
        Probe("male", 0, "t", "c", 0, 1),
        Probe("male", 1, "t", "d", 0, 1),
    ]
    report = counterfactual_gaps(few, np.array([0.9, 0.6, 0.7, 0.7]))
    assert report["groups"]["female"] == pytest.approx(
        {"sentences": 2, "mean_score": 0.75, "positive_rate": 1.0}
    )
    assert report["pairs"]["female - male"] == pytest.approx(
        {"mean_gap": 0.05, "mean_abs_gap": 0.15, "pairs": 2}
    )


def test_counterfactual_ner_recall_counts_exact_per_spans() -> None:
    from tensorfab.audit.fairness_text import counterfactual_gaps, score_rows, sentences

    probes = sentences("name-origin")
    assert len(probes) == 6 * 6 * 5  # templates x groups x people, no words
    first = probes[0]
    assert first.text == "James Walker arrived in Berlin on Monday ."
    assert first.text[first.start : first.end] == "James Walker"
    middle = next(p for p in probes if p.text.startswith("According to Wei Zhang"))
    assert middle.text[middle.start : middle.end] == "Wei Zhang"
    # rows as an NER model answers them: found exactly; only the first name; typed LOC
    span = {"start": first.start, "end": first.end}
    rows = [
        {"entities": [{"type": "PER", **span}, {"type": "LOC", "start": 24, "end": 30}]},
        {"entities": [{"type": "PER", "start": first.start, "end": first.start + 5}]},
        {"entities": [{"type": "LOC", **span}]},
    ]
    trio = [first, first, first]
    assert score_rows("per_recall", trio, rows, "").tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(TensorfabError, match="carry no entities"):
        score_rows("per_recall", trio[:1], [{"probabilities": {"a": 1.0}}], "")
    with pytest.raises(TensorfabError, match="carry none"):
        score_rows("positive_probability", trio[:1], rows[:1], "pos")
    # recall by group, hand-computed: anglo finds 2 of 3 names, hispanic 1 of 3
    people = [p for p in probes if p.cell == probes[0].cell and p.person < 3]
    people = [p for p in people if p.group in ("anglo", "hispanic")]
    report = counterfactual_gaps(people, np.array([1, 1, 0, 1, 0, 0], dtype=float))
    assert report["groups"]["anglo"]["mean_score"] == pytest.approx(2 / 3)
    assert report["groups"]["hispanic"]["mean_score"] == pytest.approx(1 / 3)
    assert report["pairs"]["anglo - hispanic"] == pytest.approx(
        {"mean_gap": 1 / 3, "mean_abs_gap": 1 / 3, "pairs": 3}
    )
