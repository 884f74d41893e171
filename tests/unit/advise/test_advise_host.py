"""The host's time per step measured on the meta device: a forked child, neutral scalar
reads, the fallback, and no change left behind in the calling process."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from tensorfab.advise import host
from tensorfab.advise.host import (
    HostCost,
    host_seconds,
    measure_or_none,
    meta_copy,
    to_meta,
)
from tensorfab.advise.record import OpRecorder


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _make_step():
    model = meta_copy(_mlp())
    optimizer = torch.optim.Adam(model.parameters(), foreach=True)
    x, y = to_meta((torch.randn(3, 4), torch.randn(3, 2)))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        assert loss.item() == 0.0  # a neutral value, not an error
        assert not bool((x > 0).all())

    return step


def test_meta_copy_moves_no_data_and_leaves_the_model_alone() -> None:
    model = _mlp()
    before = model[0].weight.detach().clone()
    copied = meta_copy(model)
    assert [p.shape for p in copied.parameters()] == [p.shape for p in model.parameters()]
    assert all(p.is_meta and p.requires_grad for p in copied.parameters())
    assert not model[0].weight.is_meta and torch.equal(model[0].weight, before)


def test_a_meta_step_is_measured_in_a_child_that_changes_nothing_here() -> None:
    cost, note = measure_or_none(_make_step)
    assert cost is not None, note
    step, recorder = _make_step(), OpRecorder()
    with pytest.raises(RuntimeError, match="meta"), recorder:  # here, .item() still raises
        step()
    assert "_local_scalar_dense" in {op.name for op in recorder.ops}  # the child ran past it
    assert cost.ops > 0 and cost.step_s > 0 and cost.dispatch_us > 0
    # the child's C++ meta kernels stayed in the child
    assert "_meta_registrations.py" in torch._C._dispatch_dump("aten::add.Tensor")
    assert note.startswith("host: ") and f"({cost.ops} ops" in note
    assert cost.switches >= 0  # Linux says how often the kept run was preempted
    assert ("involuntary context switches" in note) == (cost.switches > 0)


def test_preemptions_are_counted_for_this_thread_only() -> None:
    before = host.involuntary_switches()
    assert before >= 0
    time.sleep(0.01)  # a voluntary sleep is not an involuntary switch
    assert host.involuntary_switches() - before <= 1


def test_a_step_that_cannot_run_on_meta_falls_back_and_says_why() -> None:
    def make():
        def step() -> None:
            raise NotImplementedError("no meta kernel for frobnicate")

        return step

    cost, note = measure_or_none(make)
    assert cost is None
    assert "no meta kernel for frobnicate" in note and "assumed cost per op" in note


def test_ops_the_recorded_step_adds_are_priced_at_one_dispatch() -> None:
    cost = HostCost(step_s=1e-3, ops=10, python_meta_ops=0, dispatch_us=2.0)
    assert host_seconds(cost, 15) == pytest.approx(1e-3 + 5 * 2e-6)  # autocast's casts
    assert host_seconds(cost, 5) == pytest.approx(1e-3)  # never less than measured


def test_a_measuring_child_that_hangs_is_killed_and_the_fallback_used(monkeypatch) -> None:
    monkeypatch.setattr(host, "CHILD_TIMEOUT_S", 0.5)

    def make():
        return lambda: time.sleep(30)

    t0 = time.monotonic()
    cost, note = measure_or_none(make)
    assert cost is None and "timed out" in note and "assumed cost per op" in note
    assert time.monotonic() - t0 < 10
