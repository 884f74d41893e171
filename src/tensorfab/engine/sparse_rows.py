"""Embedding tables trained through the rows a step reads: the same AdamW, less work on a CPU.

A dense embedding gradient is a table of zeros with the batch's rows added in: for minilm's
30,522 x 384 words, a 47 MB fill each step (6-17 ms of a 190-250 ms bf16 step on one
thread), a norm over it for clipping (4 ms) and half of the fused AdamW's pass (15 of
30 ms), for the few hundred rows a batch of 16 sentences reads. :class:`SparseRows` makes
such tables return sparse gradients (``nn.Embedding(sparse=True)``: the batch's rows only)
and steps them with torch's own fused Adam kernel:

- a row some step has read (its moments are not zero) moves every step, as in the dense
  step; a row no step has read has zero moments and a zero gradient, so the dense kernel
  leaves it exactly as it is (AdamW's decay aside). While such moving rows are few
  (``GATHER_BELOW``) they are gathered, stepped and written back; once training has read
  more of the table, the kernel runs over all of it with a kept zero gradient that only
  the batch's rows are written into (no fill);
- AdamW's decoupled weight decay multiplies every row by ``1 - lr * weight_decay`` first
  (one pass over the table, as the kernel computes it: bit-identical, tested); the kernel
  then runs with the decay off.

The optimizer state is torch's own (``step``, ``exp_avg``, ``exp_avg_sq`` per table), so
checkpoints are the same as a dense run's and a run resumes in either form; the moving
rows are read back from the moments after a state is loaded. What can differ from the
dense step is float rounding in the clipping norm (the table's norm is summed over its
rows, not over the zero-filled table) and in adding up a row read twice in a batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam

MIN_ROWS = 4096  # a smaller table (positions, token types) costs little dense
# Moving rows are gathered, stepped and written back while they are fewer than this
# fraction of the table; above it the kernel runs on the whole table (minilm's words, one
# thread, the table's step with clipping: gathered 18 vs whole 27 ms at 5 % moving, 26 vs
# 22 ms at 20 %, 43 vs 25 ms at 30 %)
GATHER_BELOW = 0.2


def sparse_tables(model: nn.Module) -> list[nn.Embedding]:
    """The embedding tables of at least ``MIN_ROWS`` rows that train and are not shared
    with another layer (a tied output layer needs the dense gradient)."""
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        and m.num_embeddings >= MIN_ROWS
        and m.weight.requires_grad
        and m.max_norm is None
        and counts.get(id(m.weight)) == 1
    ]


def _eligible_group(group: dict[str, Any]) -> bool:
    """A fused Adam/AdamW group whose zero-gradient rows stay put (AdamW's decay aside)."""
    decay_ok = group["decoupled_weight_decay"] or group["weight_decay"] == 0
    return bool(group["fused"]) and not group["amsgrad"] and decay_ok


class SparseRows:
    """The sparse tables of one model and their optimizer step (module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, tables: list[nn.Embedding]) -> None:
        self.optimizer = optimizer
        self.params = [t.weight for t in tables]
        self._moving: dict[int, torch.Tensor] = {}  # id(param) -> bool [rows]
        self._dense_grads: dict[int, torch.Tensor] = {}  # id(param) -> zeros, kept
        optimizer.register_load_state_dict_post_hook(lambda _opt: self.reread())
        for table in tables:
            table.sparse = True

    def reread(self) -> None:
        """Read the moving rows from the moments again at the next step (a state loaded
        or set from outside)."""
        self._moving.clear()

    def describe(self) -> dict[str, Any]:
        return {"tables": len(self.params), "rows": [int(p.shape[0]) for p in self.params]}

    def take_grads(self) -> dict[int, torch.Tensor]:
        """The tables' gradients, coalesced (one row each), taken off the parameters so
        that the optimizer's own step skips them."""
        grads = {}
        for p in self.params:
            if p.grad is not None:
                grads[id(p)] = p.grad.coalesce()
                p.grad = None
        return grads

    def norm_inputs(self, params: list[torch.Tensor], grads: dict[int, torch.Tensor]) -> list:
        """What the clipping norm reads, in parameter order: a table's gradient rows."""
        return [
            grads[id(p)].values() if id(p) in grads else p.grad
            for p in params
            if id(p) in grads or p.grad is not None
        ]

    @torch.no_grad()
    def step(self, grads: dict[int, torch.Tensor], grad_scale: torch.Tensor | None) -> None:
        """Each table's AdamW step on the rows that move (the gradient divided by
        ``grad_scale``, the clipping's inverse factor, as the fused kernel does)."""
        for p in self.params:
            if id(p) in grads:
                self._step_table(p, grads[id(p)], grad_scale)

    def _step_table(
        self, p: torch.Tensor, grad: torch.Tensor, grad_scale: torch.Tensor | None
    ) -> None:
        group = self._group(p)
        state = self._state(p)
        if group["weight_decay"] and group["decoupled_weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])  # the kernel's own decay
        moving = self._moving_rows(p, state)
        read = grad.indices()[0]  # sorted: the gradient is coalesced
        moving[read] = True
        rows = moving.nonzero().squeeze(1)
        tensors = (p, state["exp_avg"], state["exp_avg_sq"])
        if len(rows) > GATHER_BELOW * len(moving):
            self._step_whole(group, tensors, grad, state["step"], grad_scale)
            return
        parts = tuple(t.index_select(0, rows) for t in tensors)
        grad_rows = p.new_zeros(parts[0].shape)
        grad_rows.index_copy_(0, torch.searchsorted(rows, read), grad.values())
        _adam_step(group, parts, grad_rows, state["step"], grad_scale)
        for full, part in zip(tensors, parts, strict=True):
            full.index_copy_(0, rows, part)

    def _step_whole(
        self,
        group: dict[str, Any],
        tensors: tuple[torch.Tensor, ...],
        grad: torch.Tensor,
        step: torch.Tensor,
        grad_scale: torch.Tensor | None,
    ) -> None:
        """The kernel over the whole table, its gradient a kept table of zeros with the
        batch's rows written in and zeroed again after (no 47 MB fill each step)."""
        p, read = tensors[0], grad.indices()[0]
        if id(p) not in self._dense_grads:
            self._dense_grads[id(p)] = torch.zeros_like(p)
        dense = self._dense_grads[id(p)]
        dense.index_copy_(0, read, grad.values())
        _adam_step(group, tensors, dense, step, grad_scale)
        dense.index_fill_(0, read, 0.0)  # the kernel may have scaled those rows in place

    def _group(self, p: torch.Tensor) -> dict[str, Any]:
        """The parameter's group as it is now (loading a state replaces the groups; a
        scheduler sets their learning rates)."""
        return next(g for g in self.optimizer.param_groups if any(q is p for q in g["params"]))

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        """The parameter's optimizer state, started as torch's fused Adam starts it."""
        state = self.optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _moving_rows(self, p: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Rows with a moment that is not zero: read from the state once (a fresh or
        loaded state), then kept up to date step by step."""
        if id(p) not in self._moving:
            m, v = state["exp_avg"], state["exp_avg_sq"]
            self._moving[id(p)] = (m != 0).flatten(1).any(1) | (v != 0).flatten(1).any(1)
        return self._moving[id(p)]


def _adam_step(
    group: dict[str, Any],
    parts: tuple[torch.Tensor, ...],
    grad: torch.Tensor,
    step: torch.Tensor,
    grad_scale: torch.Tensor | None,
) -> None:
    """torch's fused Adam kernel on (param, exp_avg, exp_avg_sq) ``parts``, the group's
    settings but the weight decay (applied to the whole table before)."""
    beta1, beta2 = group["betas"]
    adam(
        [parts[0]],
        [grad],
        [parts[1]],
        [parts[2]],
        [],
        [step],
        fused=True,
        grad_scale=grad_scale,
        decoupled_weight_decay=group["decoupled_weight_decay"],
        amsgrad=False,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=0.0,
        eps=group["eps"],
        maximize=group["maximize"],
    )


def create_sparse_rows(model: nn.Module, optimizer: torch.optim.Optimizer) -> SparseRows | None:
    """Sparse rows for ``model``'s big embedding tables where the optimizer allows it
    (torch's fused Adam or AdamW, no amsgrad, Adam without weight decay); None otherwise."""
    if not isinstance(optimizer, torch.optim.Adam):
        return None
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    tables = [
        t
        for t in sparse_tables(model)
        if id(t.weight) in groups and _eligible_group(groups[id(t.weight)])
    ]
    return SparseRows(optimizer, tables) if tables else None
