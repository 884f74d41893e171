"""The ensemble model: the mean of its members' log-probabilities, hand-computed, and the
mean of their CRF weights registered where a CRF head's decoder looks first."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tensorfab.models.crf import CRF_PARAM
from tensorfab.models.ensemble import Ensemble
from tensorfab.models.registry import create_model
from tensorfab.tasks.token_classification import crf_parameter


class Fixed(nn.Module):
    """A member whose logits are given, and optionally CRF weights."""

    def __init__(self, logits: list[float], crf: float | None = None) -> None:
        super().__init__()
        self.out = torch.tensor(logits)
        self.config = SimpleNamespace(name="fixed")
        if crf is not None:
            self.register_parameter(CRF_PARAM, nn.Parameter(torch.full((4, 2), crf)))
        self.seen: dict = {}

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        self.seen = inputs
        return SimpleNamespace(logits=self.out.expand(*inputs["input_ids"].shape, -1))


def test_the_output_is_the_mean_of_the_members_log_probabilities() -> None:
    a, b = Fixed([0.0, 0.0]), Fixed([math.log(3.0), 0.0])
    ids, mask = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3)
    out = Ensemble([a, b])(input_ids=ids, attention_mask=mask).logits
    # a: log(1/2), log(1/2); b: log(3/4), log(1/4)
    want = [(math.log(0.5) + math.log(0.75)) / 2, (math.log(0.5) + math.log(0.25)) / 2]
    assert out.shape == (1, 3, 2)
    assert out[0, 2].tolist() == pytest.approx(want)
    assert a.seen["attention_mask"] is mask and b.seen["input_ids"] is ids  # inputs passed on


def test_the_mean_crf_weights_are_what_the_decoder_reads() -> None:
    ens = Ensemble([Fixed([0.0, 1.0], crf=1.0), Fixed([0.0, 1.0], crf=3.0)])
    assert torch.equal(crf_parameter(ens), torch.full((4, 2), 2.0))
    assert ens.config.name == "fixed"  # the members' architecture
    assert not hasattr(Ensemble([Fixed([0.0]), Fixed([1.0])]), CRF_PARAM)


def test_one_member_is_not_an_ensemble() -> None:
    with pytest.raises(ValueError, match="at least 2 members"):
        Ensemble([Fixed([0.0])])


def test_create_model_builds_members_alike_with_their_own_weights() -> None:
    ens = create_model("lenet", ensemble=3, num_classes=4)
    assert len(ens.members) == 3
    first, second = (dict(m.named_parameters()) for m in ens.members[:2])
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # not one model thrice


def test_difference_names_the_first_field_that_differs() -> None:
    from tensorfab.package.ensemble import difference

    a = {"spec": {"path": "x", "context": True}, "n": 1}
    assert difference(a, {"spec": {"path": "x", "context": True}, "n": 1}, "data") is None
    b = {"spec": {"path": "x", "context": False}, "n": 2}
    assert difference(a, b, "data") == "data.n differs (1 vs 2)"  # keys in sorted order
    assert difference(a["spec"], b["spec"], "data.spec") == (
        "data.spec.context differs (true vs false)"
    )
    assert difference({"k": 1}, {}, "") == "k differs (1 vs null)"


def test_an_ensemble_costs_its_members_flops() -> None:
    from tensorfab.tasks.base import TokenCount
    from tensorfab.tasks.token_classification import TokenClassification

    shape = {"hidden_size": 8, "num_hidden_layers": 2, "intermediate_size": 16, "num_labels": 3}
    member = Fixed([0.0, 1.0, 2.0])
    member.config = SimpleNamespace(**shape)
    task = TokenClassification(["O", "B-PER", "I-PER"])
    count = TokenCount(samples=2, token_sum=10.0, token_sq_sum=52.0)
    one = task.forward_flops(member, count)
    assert one > 0
    assert task.forward_flops(Ensemble([member, Fixed([0.0, 1.0, 2.0])]), count) == 2 * one
