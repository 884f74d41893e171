"""Intent classification: OOS scores and metrics by hand, the rule's choice, answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tensorfab.data.text_types import TextExample, TextSplits
from tensorfab.errors import TensorfabError
from tensorfab.tasks import encoder_task, prepare_workload, task_from_meta
from tensorfab.tasks.base import Inputs
from tensorfab.tasks.intent_classification import (
    CALIBRATE,
    OUT,
    IntentClassification,
    auroc,
    choose_rule,
    choose_threshold,
    confidence,
    fpr_at_tpr,
    oos_scores,
)


class _Tokenizer:
    """One token per word, between [CLS]=1 and [SEP]=2."""

    pad_token_id = 0
    model_max_length = 512

    def __call__(self, texts: list[str]) -> dict:
        return {"input_ids": [[1, *[5] * len(t.split()), 2] for t in texts]}


def _task(**kw: object) -> IntentClassification:
    return IntentClassification(["balance", "card", "transfer"], _Tokenizer(), 16, **kw)


def test_confidence_is_max_softmax_or_logsumexp() -> None:
    logits = np.array([[0.0, math.log(3.0)]])
    assert confidence(logits, "msp")[0] == pytest.approx(0.75)
    assert confidence(logits, "energy")[0] == pytest.approx(math.log(4.0))


def test_auroc_counts_ties_half_and_fpr_at_95_tpr() -> None:
    # oos 0.5: two in-scope above, one tie -> 2.5; oos 0.1: all three above -> 3; of 6 pairs
    assert auroc(np.array([0.9, 0.8, 0.5]), np.array([0.5, 0.1])) == pytest.approx(5.5 / 6)
    in_scores = np.arange(1, 21) / 20  # keeping 95 % of 20 -> threshold at the 2nd, 0.1
    assert fpr_at_tpr(in_scores, np.array([0.05, 0.5, 0.12, 0.99])) == pytest.approx(0.75)


def test_threshold_maximises_mean_of_in_scope_accuracy_and_oos_recall() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.6])
    correct = np.array([True, True, False, False, False])
    is_oos = np.array([False, False, False, True, True])
    # between 0.6 and 0.8: both correct in-scope kept (2/3), both OOS rejected (1)
    threshold, objective = choose_threshold(scores, correct, is_oos)
    assert threshold == pytest.approx(0.7)
    assert objective == pytest.approx((2 / 3 + 1) / 2)


def test_oos_metrics_by_hand() -> None:
    logits = np.array([[3.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 2, 0]])
    targets = np.array([0, 1, OUT, OUT])
    preds = np.array([0, 3, 3, 1])  # 3: rejected (the fallback)
    scores = oos_scores(logits, targets, preds, {"score": "msp"})
    assert scores["in_scope_accuracy"] == 0.5  # row 1 rejected although in scope
    assert scores["oos_recall"] == 0.5 and scores["oos_precision"] == 0.5
    msp = confidence(logits, "msp")  # in: 0.909, 0.576; oos: 0.333, 0.787
    assert msp[2] < msp[1] < msp[3] < msp[0]
    assert scores["auroc"] == pytest.approx(3 / 4)
    assert scores["fpr_at_95_tpr"] == pytest.approx(0.5)  # threshold 0.576 keeps the 0.787


def test_rule_is_chosen_only_on_the_calibration_split_and_recorded() -> None:
    task = _task(detect_oos=True)
    logits = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0.1, 0, 0], [0, 0, 4.0]])
    calibrate = torch.tensor([0, 1, CALIBRATE, 2])
    scores = task.eval_scores([(calibrate, logits.argmax(-1), logits)])
    rule = task.config()["oos_rule"]
    assert rule["score"] in ("msp", "energy") and scores["oos_rule"] == rule
    assert scores["in_scope_accuracy"] == 1.0 and scores["oos_recall"] == 1.0
    # a scored split (OOS as OUT) keeps the rule, even if another would fit it better
    task.eval_scores([(torch.tensor([OUT, 1, 2, 0]), logits.argmax(-1), logits)])
    assert task.config()["oos_rule"] == rule


def test_oos_trained_as_a_class_wins_when_its_argmax_separates_best() -> None:
    # intents a, b and the trained oos output (column 2); rows: a, b, oos, oos
    logits = np.array([[3.0, 0, 1], [0, 2.0, 0], [2.0, 0, 3], [0, 1.0, 2]])
    targets = np.array([0, 1, CALIBRATE, CALIBRATE])
    # msp of the intents: 0.95, 0.88, 0.88, 0.73 -> a threshold keeps row 1 or rejects
    # row 2, never both (objective 0.75); the class rule rejects exactly rows 2 and 3
    rule = choose_rule(logits, targets, 2)
    assert rule == {"score": "class", "threshold": None, "objective": 1.0}
    # without the trained column only the two scores compete
    assert choose_rule(logits[:, :2], targets, 2)["score"] in ("msp", "energy")
    # equally good: msp, the first in order, is kept (a tie never picks the class rule)
    easy = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 0, 5.0]])
    assert choose_rule(easy, targets, 2)["score"] == "msp"


def test_class_rule_decides_by_argmax_and_scores_by_the_intents_probability() -> None:
    task = _task(detect_oos=True, oos_class=True, oos_rule={"score": "class", "threshold": None})
    assert task.logits_shape() == (4,)  # three intents and oos
    logits = np.array([[2.0, 0, 0, 1], [0, 1.0, 0, 3], [0, 0, 1.0, 0.5]])
    assert task.decide(logits).tolist() == [0, 3, 2]  # 3 = len(classes): the fallback
    scores = task.eval_scores([(torch.tensor([0, OUT, 2]), None, torch.tensor(logits))])
    assert scores["in_scope_accuracy"] == 1.0 and scores["oos_recall"] == 1.0
    assert scores["auroc"] == 1.0  # the oos row has the lowest 1 - p(oos)
    rows = task.rows(Inputs(["x"], ["t"]), (torch.tensor([0]),), logits[1:2], top_k=3)
    assert rows[0]["label"] == "oos" and list(rows[0]["top"]) == ["card", "balance", "transfer"]
    assert sum(rows[0]["top"].values()) == pytest.approx(1.0)  # softmax over intents only


def test_encode_split_trains_the_training_splits_oos_as_the_class_after_the_intents() -> None:
    task = _task()
    examples = [TextExample("my card", "card"), TextExample("tell a joke", "oos")]
    assert task.encode_split("train", examples)[1] == [1, 3]
    assert task.oos_class and task.config()["oos_class"] is True
    assert task.encode_split("test", examples)[1] == [1, OUT]  # scored, not trained
    assert task.encode_split("eval", examples)[1] == [1, CALIBRATE]
    plain = _task()
    plain.encode_split("train", examples[:1])
    assert not plain.oos_class and plain.logits_shape() == (3,)


def test_loss_ignores_out_of_scope_targets() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    batch = (torch.arange(2), None, None, torch.tensor([0, CALIBRATE]))
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert _task().loss(logits, batch).item() == pytest.approx(expected)  # type: ignore[arg-type]
    none_in_scope = (torch.arange(1), None, None, torch.tensor([OUT]))
    assert _task().loss(logits[:1], none_in_scope).item() == 0.0  # type: ignore[arg-type]


def test_encode_split_marks_the_eval_splits_oos_queries_for_calibration() -> None:
    task = _task()
    examples = [TextExample("my card", "card"), TextExample("tell a joke", "oos")]
    assert task.encode_split("test", examples)[1] == [1, OUT]
    assert task.encode_split("eval", examples)[1] == [1, CALIBRATE]
    assert task.detect_oos and "oos_recall" in task.metric_names
    assert "oos_recall" not in _task().metric_names


def test_rows_answer_top_k_fallback_and_ambiguity() -> None:
    task = _task(ambiguity_margin=0.2, oos_rule={"score": "msp", "threshold": 0.5})
    logits = np.log(np.array([[0.45, 0.40, 0.15], [0.1, 0.8, 0.1]]))
    inputs = Inputs(["a", "b"], ["text 0", "text 1"])
    rows = task.rows(inputs, (torch.tensor([1, 0]),), logits, top_k=2)
    assert rows[1]["label"] == "oos" and rows[1]["out_of_scope"] and rows[1]["ambiguous"]
    assert list(rows[1]["top"]) == ["balance", "card"]  # best first
    assert rows[1]["top"]["balance"] == pytest.approx(0.45)
    assert rows[0] == {
        "input": "a",
        "label": "card",
        "score": pytest.approx(0.8),
        "top": {"card": pytest.approx(0.8), "balance": pytest.approx(0.1)},
        "out_of_scope": False,
        "ambiguous": False,
    }


def test_task_rebuilds_from_its_package_record() -> None:
    task = _task(
        detect_oos=True,
        oos_rule={"score": "energy", "threshold": 1.5},
        oos_class=True,
        ambiguity_margin=0.25,
    )
    meta = {"task": "intent-classification", "labels": task.classes, "task_config": task.config()}
    rebuilt = task_from_meta(meta)
    assert isinstance(rebuilt, IntentClassification)
    assert rebuilt.config() == task.config()
    assert rebuilt.metric_names == task.metric_names


class _Embedder(torch.nn.Module):
    """A mean-pooled head on a 2-wide encoder: a query's embedding is (its tokens, 1)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(2, classes)
        self.seen: list[torch.Tensor] = []

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert not self.training  # embedded without dropout
        n = attention_mask.sum(-1, keepdim=True).float()
        return torch.cat([n, torch.ones_like(n)], dim=-1)

    def init_from_prototypes(self, embeddings: torch.Tensor, labels: torch.Tensor) -> int:
        self.seen = [embeddings, labels]
        return int(labels.unique().numel())


def _splits() -> TextSplits:
    train = [TextExample("what is my balance", "balance"), TextExample("card", "card")]
    train += [TextExample("my card is lost", "card")]
    return TextSplits(train, train[:1], train[:1], ["balance", "card"])


@pytest.fixture
def _words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workloads tokenize with :class:`_Tokenizer` (no tokenizer files are read)."""
    monkeypatch.setattr(encoder_task, "load_tokenizer", lambda name: _Tokenizer())


@pytest.mark.usefixtures("_words")
def test_intents_read_mean_pooled_queries_and_start_from_class_means() -> None:
    options = {"model_name": "bert-tiny", "intents": {"prototype_init": False}}
    plain = prepare_workload("intent-classification", _splits(), **options)
    assert plain.model_args["pooling"] == "mean" and plain.init_model is None
    workload = prepare_workload("intent-classification", _splits(), model_name="bert-tiny")
    model = _Embedder(2).train()
    assert workload.init_model is not None
    workload.init_model(model)
    embeddings, labels = model.seen
    # every training query once, with [CLS] and [SEP]: 4 + 2, 1 + 2, 4 + 2 tokens
    by_label = sorted(zip(labels.tolist(), embeddings[:, 0].tolist(), strict=True))
    assert by_label == [(0, 6.0), (1, 3.0), (1, 6.0)]
    assert model.training  # put back as it was


@pytest.mark.usefixtures("_words")
def test_prototype_init_without_the_mean_pooled_head_is_one_line() -> None:
    workload = prepare_workload(
        "intent-classification",
        _splits(),
        model_name="bert-tiny",
        intents={"prototype_init": True},
    )
    assert workload.init_model is not None
    with pytest.raises(TensorfabError) as info:
        workload.init_model(torch.nn.Linear(2, 2))
    assert str(info.value) == (
        "intents.prototype_init: the class-mean start needs the mean-pooled head "
        "(model.args.pooling: mean); with another head set intents.prototype_init: false"
    )
