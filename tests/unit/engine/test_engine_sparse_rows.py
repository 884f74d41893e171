"""Sparse embedding rows (``engine/sparse_rows.py``): the same parameters and optimizer state
as torch's dense fused AdamW step, gathered or over the whole table, fresh or resumed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tensorfab.engine import sparse_rows
from tensorfab.engine.fit import clipped_step
from tensorfab.engine.sparse_rows import MIN_ROWS, SparseRows, create_sparse_rows


def _model() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"emb": nn.Embedding(MIN_ROWS, 8, padding_idx=0), "out": nn.Linear(8, 3)})


def _adamw(model: nn.Module, wd: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=wd, fused=True)


def _backward(model: nn.ModuleDict, step: int, size: float) -> None:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(0, 60, (4, 6), generator=g)  # row 0 (padding) and repeats included
    (model["out"](model["emb"](ids)) * size).square().sum().backward()


def _steps(
    model: nn.ModuleDict,
    opt: torch.optim.Optimizer,
    steps: int,
    clip: float | None,
    size: float,
    rows: SparseRows | None = None,
    start: int = 0,
) -> None:
    for step in range(start, start + steps):
        _backward(model, step, size)
        clipped_step(opt, list(model.parameters()), clip, rows)
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("gather_below", [1.0, 0.0])  # gathered rows; the whole table
@pytest.mark.parametrize(("wd", "clip", "size"), [(0.0, None, 1.0), (0.01, 1.0, 1e-4)])
def test_sparse_rows_step_equals_dense_adamw(
    monkeypatch: pytest.MonkeyPatch, gather_below: float, wd: float, clip: float | None, size: float
) -> None:
    monkeypatch.setattr(sparse_rows, "GATHER_BELOW", gather_below)
    dense, sparse = _model(), _model()
    opt_dense, opt_sparse = _adamw(dense, wd), _adamw(sparse, wd)
    rows = create_sparse_rows(sparse, opt_sparse)
    assert rows is not None and rows.describe() == {"tables": 1, "rows": [MIN_ROWS]}
    _steps(dense, opt_dense, 4, clip, size)
    _steps(sparse, opt_sparse, 4, clip, size, rows)
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        assert torch.equal(a, b)  # no clipping here (norm << 1): bit for bit
    emb = dense["emb"].weight
    assert torch.equal(opt_dense.state[emb]["step"], torch.tensor(4.0))
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt_dense.state[emb][key], opt_sparse.state[sparse["emb"].weight][key])
    assert int((opt_dense.state[emb]["exp_avg_sq"] != 0).any(1).sum()) < 60  # few rows move


@pytest.mark.parametrize("gather_below", [1.0, 0.0])
def test_sparse_rows_clipped_close_to_dense(
    monkeypatch: pytest.MonkeyPatch, gather_below: float
) -> None:
    """Clipping at a norm above the limit: the clip factor may differ by rounding only
    (over the whole table, the kept zero gradient is zero again after each scaled step)."""
    monkeypatch.setattr(sparse_rows, "GATHER_BELOW", gather_below)
    dense, sparse = _model(), _model()
    opt_dense, opt_sparse = _adamw(dense, 0.01), _adamw(sparse, 0.01)
    rows = create_sparse_rows(sparse, opt_sparse)
    _steps(dense, opt_dense, 3, 1.0, 1.0)
    _steps(sparse, opt_sparse, 3, 1.0, 1.0, rows)
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert sparse["emb"].weight.grad is None and not hasattr(opt_sparse, "grad_scale")
    kept = list(rows._dense_grads.values())
    assert len(kept) == (1 if gather_below == 0.0 else 0) and all(not g.any() for g in kept)


def test_sparse_rows_resume_from_a_dense_state() -> None:
    """A dense run's checkpoint continued with sparse rows: the moving rows are read back
    from the loaded moments, so rows read only before the resume keep moving."""
    dense, resumed = _model(), _model()
    opt_dense = _adamw(dense, 0.01)
    _steps(dense, opt_dense, 2, None, 1.0)
    resumed.load_state_dict(dense.state_dict())
    opt_resumed = _adamw(resumed, 0.01)
    rows = create_sparse_rows(resumed, opt_resumed)
    opt_resumed.load_state_dict(copy.deepcopy(opt_dense.state_dict()))  # as read from disk
    for opt in (opt_dense, opt_resumed):
        opt.param_groups[0]["lr"] = 0.05  # as a scheduler sets it, in the loaded group
    _steps(dense, opt_dense, 2, None, 1.0, start=2)
    _steps(resumed, opt_resumed, 2, None, 1.0, rows, start=2)
    for a, b in zip(dense.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sparse_rows_only_where_the_step_stays_the_same() -> None:
    model = _model()
    assert create_sparse_rows(model, torch.optim.SGD(model.parameters(), lr=0.1)) is None
    adam_decay = torch.optim.Adam(model.parameters(), weight_decay=0.01, fused=True)
    assert create_sparse_rows(model, adam_decay) is None  # L2 decay moves every row's moments
    assert create_sparse_rows(model, torch.optim.AdamW(model.parameters())) is None  # not fused
    assert not model["emb"].sparse
    small = nn.Embedding(MIN_ROWS - 1, 4)
    assert create_sparse_rows(small, _adamw(small, 0.0)) is None
    tied = nn.ModuleDict({"emb": nn.Embedding(MIN_ROWS, 4), "out": nn.Linear(4, MIN_ROWS)})
    tied["out"].weight = tied["emb"].weight  # an output layer sharing the table
    assert create_sparse_rows(tied, _adamw(tied, 0.0)) is None
    rows = create_sparse_rows(model, torch.optim.Adam(model.parameters(), fused=True))
    assert rows is not None and model["emb"].sparse  # Adam without decay: rows stay put


def test_the_cpu_runtime_steps_rows_sparse_and_says_so() -> None:
    from tensorfab.engine.runtime import Runtime

    model = _model()
    gpu = Runtime(torch.device("meta"), "fp32")  # another device: left dense
    gpu.step_rows_sparse(model, _adamw(model, 0.0))
    assert gpu.describe()["sparse_embedding_rows"] is None and not model["emb"].sparse
    cpu = Runtime(torch.device("cpu"), "fp32")
    cpu.step_rows_sparse(model, _adamw(model, 0.0))
    assert cpu.describe()["sparse_embedding_rows"] == {"tables": 1, "rows": [MIN_ROWS]}
    assert model["emb"].sparse
