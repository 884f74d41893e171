"""Entity error analysis: boundary, wrong type, missed and spurious, per type."""

from __future__ import annotations

from tensorfab.metrics import entity_errors
from tensorfab.metrics.report import render_markdown


def test_each_kind_of_error_is_counted_under_its_type() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"], ["O", "O"], ["B-LOC"]]
    pred = [["B-PER", "O", "O", "B-ORG", "O", "O"], ["B-MISC", "O"], ["B-LOC"]]
    errors = entity_errors(true, pred)
    zero = dict.fromkeys(("correct", "boundary", "wrong_type", "missed", "spurious"), 0)
    assert errors["per_type"] == {
        "LOC": {**zero, "correct": 1, "wrong_type": 1},
        "MISC": {**zero, "spurious": 1},
        "ORG": {**zero, "missed": 1},
        "PER": {**zero, "boundary": 1},
    }
    assert errors["confusions"] == [{"true": "LOC", "pred": "ORG", "count": 1, "same_span": 1}]


def test_the_run_report_shows_the_errors() -> None:
    errors = entity_errors([["B-LOC", "O"]], [["B-ORG", "I-ORG"]])
    scores = {"entity": {"f1": 0.0, "per_type": {}}, "errors": errors}
    text = render_markdown({"name": "r", "metrics": {"eval": scores}})
    assert "| LOC | 0 | 0 | 1 | 0 | 0 |" in text
    assert "| LOC | ORG | 1 | 0 |" in text
