"""The recommendation task without training: losses, answers people read, requests."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tensorfab.data.movielens import Interactions
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model
from tensorfab.tasks.base import ServingLimits
from tensorfab.tasks.recommendation import (
    UNKNOWN_NOTE,
    Recommendation,
    build_recommendation,
    sampled_candidates,
)

ITEMS = ["a", "b", "c", "d"]


def task(loss: str = "bpr") -> Recommendation:
    # user "u1" saw items 0 and 1; "u2" saw nothing; item popularity 5, 3, 1, 0
    return Recommendation(ITEMS, ["u1", "u2"], [[0, 1], []], [5, 3, 1, 0], loss)


def test_answers_leave_out_seen_items_unless_asked() -> None:
    t = task()
    inputs = t.read_inputs(["u1", "u1:all", "u2"])
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 3)
    rows = t.rows(inputs, 0, logits, 2)
    assert rows[0]["items"] == [{"item": "c", "score": 2.0}, {"item": "d", "score": 1.0}]
    assert [r["item"] for r in rows[1]["items"]] == ["a", "b"]
    assert [r["item"] for r in rows[2]["items"]] == ["a", "b"]
    assert all("notes" not in r for r in rows.values())


def test_an_unknown_user_gets_the_popular_items_and_a_note() -> None:
    t = task()
    inputs = t.read_inputs(["nobody"])
    row = t.rows(inputs, 0, torch.zeros(1, 4), 3)[0]
    assert row["items"] == [
        {"item": i, "score": s} for i, s in (("a", 5.0), ("b", 3.0), ("c", 1.0))
    ]
    assert row["notes"] == [UNKNOWN_NOTE] and inputs.notes == [f"nobody: {UNKNOWN_NOTE}"]


def test_a_request_may_ask_for_seen_items_and_its_own_k() -> None:
    t = task()
    body = json.dumps({"instances": [{"user": "u1", "include_seen": True, "top_k": 1}, "u2"]})
    inputs = t.decode_request(body.encode(), ServingLimits())
    rows = t.rows(inputs, 0, torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 2), 3)
    assert rows[0]["items"] == [{"item": "a", "score": 4.0}] and len(rows[1]["items"]) == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "expected"),
        (b'{"instances": []}', "non-empty"),
        (b'{"instances": [{"id": 1}]}', r"instances\[0\]"),
        (b'{"instances": [{"user": "u1", "top_k": 0}]}', r"instances\[0\].top_k"),
    ],
)
def test_bad_requests_are_refused_by_name(body: bytes, message: str) -> None:
    with pytest.raises(TensorfabError, match=message):
        task().decode_request(body, ServingLimits())


@pytest.mark.parametrize(
    ("name", "loss"),
    [("mf-bpr", "bpr"), ("neumf", "bce"), ("two-tower", "in-batch"), ("mf-softmax", "softmax")],
)
def test_each_loss_trains_on_its_batch_and_full_scores_match_pairs(name: str, loss: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_users=2, num_items=4, dim=8)
    t = task(loss)
    batch = (torch.tensor([0, 1, 1]), torch.tensor([2, 0, 3]))
    value = t.loss(t.logits(model, batch), batch)
    assert value.ndim == 0 and torch.isfinite(value) and value.requires_grad
    users = torch.tensor([0, 1])
    every = torch.arange(4).expand(2, 4)
    torch.testing.assert_close(model(users), model.pairs(users, every))


def test_evaluation_ranks_only_unseen_items() -> None:
    t = task()
    users = torch.tensor([0, 1])
    seen = torch.tensor([[True, True, False, False], [False] * 4])
    targets = torch.tensor([[False, False, False, True], [False, True, False, False]])
    logits = torch.tensor([[9.0, 8.0, 1.0, 2.0], [3.0, 2.0, 1.0, 0.0]])
    step = t.eval_step(logits, (users, seen, targets, sampled_candidates(users, seen, targets)))
    assert step[1][:, :2].tolist() == [[3, 2], [0, 1]]  # top items, as parity compares them
    out = t.eval_scores([step])
    # user 0: "d" ranks first once seen items are left out; user 1: "b" ranks second
    assert out["hit@10"] == 1.0 and out["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert out["sampled99_hit@10"] == 1.0


def test_predict_prints_a_recommendation_row_as_one_line_with_its_note() -> None:
    from tensorfab.cli.predict import format_row

    row = {"input": "x", "items": [{"item": "a", "score": 5.0}], "notes": [UNKNOWN_NOTE]}
    assert format_row(row) == f"x\ta:5.000\n  note: {UNKNOWN_NOTE}"


class _PersonalModel(torch.nn.Module):
    """Scores each user's own held-out item 10, every other item 0."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(users % self.num_items, self.num_items).float() * 10


def test_robustness_answers_some_users_as_others_and_scores_fall() -> None:
    items = [str(i) for i in range(8)]
    users = [str(u) for u in range(40)]
    t = Recommendation(items, users, [[] for _ in users], [1] * 8, "bpr")
    index = torch.arange(40)
    data = Interactions(index, index % 8, num_users=40, num_items=8)
    rows = t.robustness(_PersonalModel(8), data, torch.device("cpu"), seed=0)
    assert [(r["attack"], r["eps"]) for r in rows] == [
        ("none", 0.0),
        ("user-swap", 0.1),
        ("user-swap", 0.25),
        ("user-swap", 0.5),
    ]
    assert rows[0]["mrr@10"] == 1.0  # unperturbed: every user's item ranks first
    assert rows[3]["mrr@10"] < rows[0]["mrr@10"]
    assert t.robustness(_PersonalModel(8), data, torch.device("cpu"), seed=0) == rows  # seeded


def test_softmax_loss_is_the_positives_cross_entropy_over_all_items() -> None:
    model = create_model("mf-softmax", num_users=2, num_items=4, dim=2)
    with torch.no_grad():  # user 0 = (1, 0); items score 0, ln 2, 0, 0 for it
        model.users.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.items.weight.copy_(torch.tensor([[0.0, 0], [0.6931472, 0], [0, 0], [0, 0]]))
    t = task("softmax")
    batch = (torch.tensor([0]), torch.tensor([1]))
    # p(item 1) = 2 / (1 + 2 + 1 + 1) = 0.4
    value = t.loss(t.logits(model, batch), batch).detach()
    assert float(value) == pytest.approx(-math.log(0.4))


def test_sampled_candidates_are_a_target_then_unseen_items_padded_with_minus_one() -> None:
    users = torch.tensor([0, 1, 2])
    seen = torch.zeros(3, 120, dtype=torch.bool)
    seen[0, :30] = True  # user 0: 90 items left, one of them a target -> 89 negatives
    targets = torch.zeros(3, 120, dtype=torch.bool)
    targets[0, 50], targets[1, [3, 7]], targets[2, 119] = True, True, True
    c = sampled_candidates(users, seen, targets)
    assert c.shape == (3, 100)
    assert c[0, 0] == 50 and c[2, 0] == 119 and int(c[1, 0]) in (3, 7)
    assert (c[0, 90:] == -1).all() and (c[0, 1:90] >= 30).all() and 50 not in c[0, 1:]
    assert len(set(c[1, 1:].tolist())) == 99 and not {3, 7} & set(c[1, 1:].tolist())
    # a user's candidates do not depend on the other users of the batch
    torch.testing.assert_close(sampled_candidates(users[1:], seen[1:], targets[1:]), c[1:])


def test_task_config_round_trips_with_seen_items_one_line_per_user() -> None:
    config = task().config()
    assert config["seen"] == ["0 1", ""]
    again = build_recommendation(ITEMS, **config)
    assert again.seen == [[0, 1], []] and again.config() == config
    old = build_recommendation(ITEMS, **{**config, "seen": [[0, 1], []]})  # earlier packages
    assert old.seen == [[0, 1], []]
