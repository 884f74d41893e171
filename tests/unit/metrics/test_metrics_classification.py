"""Tests for tensorfab.metrics.classification: hand-computed scores, edge cases, input types."""

import warnings

import numpy as np
import pytest
import torch

from tensorfab.metrics import classification_scores, confusion_matrix

NAMES = ["cat", "dog", "fox"]
# 3 classes, 8 samples
TARGETS = [0, 0, 0, 0, 1, 1, 2, 2]
PREDS = [0, 0, 1, 2, 1, 1, 1, 2]
# confusion matrix, rows = true, cols = predicted:
#   cat: [2, 1, 1]   (4 true cats: 2 right, 1 called dog, 1 called fox)
#   dog: [0, 2, 0]
#   fox: [0, 1, 1]
# predicted counts (column sums): cat 2, dog 4, fox 2
# cat: precision 2/2 = 1,   recall 2/4 = 1/2, F1 = 2*1*(1/2)/(1+1/2) = 2/3
# dog: precision 2/4 = 1/2, recall 2/2 = 1,   F1 = 2*(1/2)*1/(3/2)   = 2/3
# fox: precision 1/2,       recall 1/2,       F1 = 1/2
# accuracy = (2+2+1)/8 = 5/8; micro F1 = accuracy for single-label multiclass
# macro F1 = (2/3 + 2/3 + 1/2)/3 = 11/18
# weighted F1 = (4*2/3 + 2*2/3 + 2*1/2)/8 = (8/3 + 4/3 + 1)/8 = 5/8
EXPECTED_CLASSES = {
    "cat": {"precision": 1.0, "recall": 1 / 2, "f1": 2 / 3, "support": 4},
    "dog": {"precision": 1 / 2, "recall": 1.0, "f1": 2 / 3, "support": 2},
    "fox": {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2},
}


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix(np.array(TARGETS), np.array(PREDS), 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[2, 1, 1], [0, 2, 0], [0, 1, 1]])


def test_hand_computed_scores():
    scores = classification_scores(np.array(TARGETS), np.array(PREDS), NAMES)
    assert scores["n"] == 8
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["micro_f1"] == pytest.approx(5 / 8)
    assert scores["macro_f1"] == pytest.approx(11 / 18)
    assert scores["weighted_f1"] == pytest.approx(5 / 8)
    assert scores["confusion_matrix"] == [[2, 1, 1], [0, 2, 0], [0, 1, 1]]
    assert list(scores["per_class"]) == NAMES
    for name, expected in EXPECTED_CLASSES.items():
        got = scores["per_class"][name]
        assert got["support"] == expected["support"]
        for key in ("precision", "recall", "f1"):
            assert got[key] == pytest.approx(expected[key]), (name, key)


def test_perfect_predictions_score_one():
    labels = np.array([0, 1, 2, 2, 1, 0])
    scores = classification_scores(labels, labels.copy(), NAMES)
    for key in ("accuracy", "macro_f1", "weighted_f1", "micro_f1"):
        assert scores[key] == 1.0
    assert all(row["f1"] == 1.0 for row in scores["per_class"].values())


def test_class_never_predicted_scores_zero_without_warning_or_nan():
    targets = np.array([0, 1, 2, 2])
    preds = np.array([0, 1, 1, 1])  # "fox" never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (0/0) fails the test
        scores = classification_scores(targets, preds, NAMES)
    fox = scores["per_class"]["fox"]
    assert fox == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert not np.isnan(scores["macro_f1"])


def test_class_absent_from_data_is_reported_with_zero_support():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = classification_scores([0, 0, 1], [0, 0, 1], NAMES)
    assert scores["per_class"]["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["accuracy"] == 1.0
    # like sklearn's macro average without explicit labels: the class that is neither in the
    # data nor predicted is left out, not averaged in as a zero (which read 2/3 here)
    assert scores["macro_f1"] == 1.0
    predicted_only = classification_scores([0, 0, 1], [0, 2, 1], NAMES)  # fox predicted once
    assert predicted_only["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_torch_tensor_inputs_match_numpy():
    from_torch = classification_scores(torch.tensor(TARGETS), torch.tensor(PREDS), NAMES)
    from_numpy = classification_scores(np.array(TARGETS), np.array(PREDS), NAMES)
    assert from_torch == from_numpy
    cm = confusion_matrix(torch.tensor(TARGETS, dtype=torch.int32), torch.tensor(PREDS), 3)
    assert cm.dtype == np.int64


def test_empty_input_scores_zero():
    scores = classification_scores(
        np.array([], dtype=np.int64), np.array([], dtype=np.int64), NAMES
    )
    assert scores["n"] == 0
    assert scores["accuracy"] == 0.0
    assert scores["macro_f1"] == 0.0


def test_scores_are_plain_python_types():
    scores = classification_scores(TARGETS, PREDS, NAMES)
    assert type(scores["accuracy"]) is float
    assert type(scores["n"]) is int
    assert type(scores["per_class"]["cat"]["support"]) is int
    assert type(scores["confusion_matrix"][0][0]) is int


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match="targets and preds differ in length: 3 vs 2"):
        confusion_matrix([0, 1, 2], [0, 1], 3)


def test_out_of_range_class_id_is_an_error():
    with pytest.raises(ValueError, match=r"preds holds class ids outside \[0, 3\)"):
        confusion_matrix([0, 1, 2], [0, 1, 3], 3)


def test_float_labels_are_an_error():
    with pytest.raises(ValueError, match="targets must hold integer class ids"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)


def test_two_dimensional_labels_are_an_error():
    with pytest.raises(ValueError, match=r"preds must be 1-D, got shape \(2, 2\)"):
        confusion_matrix([0, 1, 0, 1], [[0, 1], [0, 1]], 2)


def test_empty_class_names_is_an_error():
    with pytest.raises(ValueError, match="class_names is empty"):
        classification_scores([0], [0], [])


def test_matches_sklearn_on_random_labels():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, size=200)
    preds = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 5, size=200))
    preds[preds == 4] = 3  # class 4 never predicted: exercises zero division
    names = [f"c{i}" for i in range(5)]
    scores = classification_scores(targets, preds, names)
    labels = list(range(5))
    for average in ("macro", "weighted", "micro"):
        expected = skm.f1_score(targets, preds, labels=labels, average=average, zero_division=0)
        assert scores[f"{average}_f1"] == pytest.approx(expected)
    precision = skm.precision_score(targets, preds, labels=labels, average=None, zero_division=0)
    got = [scores["per_class"][name]["precision"] for name in names]
    np.testing.assert_allclose(got, precision)
