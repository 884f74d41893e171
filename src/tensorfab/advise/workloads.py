"""Named synthetic workloads for ``tensorfab advise --workload``: no data set, no spec.

Each is the plain loop a tutorial writes, on random inputs of a fixed shape (one batch
reused, so no host input time): ``bert-base-infer`` (forward only, weights cast to the
precision, as ``model.half()`` does), ``bert-base-train`` (token classification, Adam,
autocast) and ``lenet-train`` (28x28 images, Adam). The BERT-base shape is a random-weight
encoder of minilm's vocabulary with BertConfig's default sizes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorfab.advise.host import HostCost, host_seconds, measure_or_none, meta_copy, to_meta
from tensorfab.advise.profile import (
    PROBE_SIZES,
    Profile,
    Recording,
    fit_lines,
    memory_lines,
    one_thread,
    optimizer_tensors,
    record,
    start_line,
)
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model

BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}
RUN_SAMPLES = 1_000_000  # an inference "run": a million samples (a training run: one batch)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Named:
    """A named workload: how to build its model and inputs, and whether it trains."""

    kind: str  # train | infer
    build: Callable[[], nn.Module]
    inputs: Callable[[int, int], tuple[torch.Tensor, ...]]  # (batch, seq_len) -> tensors
    logits: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]
    help: str


def _bert() -> nn.Module:
    return create_model("minilm-l6", num_classes=9, head="token", random_init=True, **BERT_BASE)


def _tokens(batch: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, seq_len), generator=g)
    return ids, torch.ones_like(ids), torch.randint(0, 9, (batch, seq_len), generator=g)


def _images(batch: int, _seq_len: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)


def _encoder_logits(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model(input_ids=inputs[0], attention_mask=inputs[1]).logits


def _image_logits(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model(inputs[0])


NAMED: dict[str, Named] = {
    "bert-base-infer": Named(
        "infer", _bert, _tokens, _encoder_logits, "BERT-base forward, random tokens"
    ),
    "bert-base-train": Named(
        "train", _bert, _tokens, _encoder_logits, "BERT-base token classification, Adam"
    ),
    "lenet-train": Named(
        "train", lambda: create_model("lenet"), _images, _image_logits, "LeNet, 28x28, Adam"
    ),
}


def _infer_step(named: Named, model: nn.Module, inputs: tuple) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            named.logits(model, inputs)

    return step


def _train_step(
    named: Named, model: nn.Module, inputs: tuple, precision: str, optimizer: Any
) -> Callable[[], None]:
    dtype = _DTYPES[precision]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype, enabled=precision != "fp32"):
            logits = named.logits(model, inputs)
        target = inputs[-1]
        loss = nn.functional.cross_entropy(logits.float().flatten(0, -2), target.flatten())
        loss.backward()
        optimizer.step()
        loss.item()  # the tutorials' loss logging: one host sync per step

    return step


def fp32_step(name: str, batch: int, seq_len: int) -> Callable[[], None]:
    """One eager fp32 step of the named workload, as a tutorial runs it (seed 0): what the
    CPU calibration and validation benchmarks time."""
    named = NAMED[name]
    torch.manual_seed(0)
    model, inputs = named.build(), named.inputs(batch, seq_len)
    if named.kind == "infer":
        return _infer_step(named, model.eval(), inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    return _train_step(named, model.train(), inputs, "fp32", optimizer)


def tiny_mlp_step() -> Callable[[], None]:
    """A training step of a width-4, 12-layer MLP (Adam, seed 0), run once: so small that
    its time is all host work, the reference the per-op host cost is measured on."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(4, 4), nn.ReLU())])
    optimizer = torch.optim.Adam(model.parameters(), foreach=True)
    x, y = torch.randn(2, 4), torch.randn(2, 4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    step()
    return step


def _record(named: Named, model: nn.Module, precision: str, n: int, seq_len: int) -> Recording:
    fresh = copy.deepcopy(model)
    inputs = named.inputs(n, seq_len)
    optimizer = None
    if named.kind == "infer":
        fresh = fresh.eval().to(_DTYPES[precision])
        step = _infer_step(named, fresh, inputs)
    else:
        optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-4, foreach=True)  # CUDA's default
        step = _train_step(named, fresh.train(), inputs, precision, optimizer)
    state = (lambda: optimizer_tensors(optimizer)) if optimizer else list
    return record(step, lambda: [*fresh.parameters(), *fresh.buffers(), *inputs, *state()])


def _meta_step(
    named: Named, model: nn.Module, precision: str, seq_len: int
) -> Callable[[], Callable[[], None]]:
    """A maker of the same step on the meta device (training in fp32: advise/host.py)."""

    def make() -> Callable[[], None]:
        fresh = meta_copy(model)
        inputs = to_meta(named.inputs(PROBE_SIZES[0], seq_len))
        if named.kind == "infer":
            return _infer_step(named, fresh.eval().to(_DTYPES[precision]), inputs)
        optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-4, foreach=True)
        return _train_step(named, fresh.train(), inputs, "fp32", optimizer)

    return make


_HOST: dict[tuple[str, int], tuple[HostCost | None, str]] = {}


def _host_cost(
    name: str, named: Named, model: nn.Module, precision: str, seq_len: int
) -> tuple[HostCost | None, str]:
    """The meta step's host cost, measured once per workload and sequence length: the
    meta device runs every precision's step alike (advise/host.py), so one measurement
    serves them all and their differences are the recorded ops', not noise."""
    key = (name, seq_len)
    if key not in _HOST:
        _HOST[key] = measure_or_none(_meta_step(named, model, precision, seq_len))
    return _HOST[key]


def profile_named(name: str, batch: int, seq_len: int, precision: str) -> Profile:
    """The profile of a named workload at ``batch`` x ``seq_len`` in ``precision``."""
    if name not in NAMED:
        known = ", ".join(NAMED)
        raise TensorfabError(f"--workload: unknown workload {name!r}; choose from {known}")
    named = NAMED[name]
    recorded = precision if precision in _DTYPES else "fp32"
    torch.manual_seed(0)
    model = named.build()
    with one_thread():
        a, b = (_record(named, model, recorded, n, seq_len) for n in PROBE_SIZES)
        host, host_note = _host_cost(name, named, model, recorded, seq_len)
    return Profile(
        name=name,
        kind=named.kind,
        precision=recorded,
        batch_size=batch,
        ops=fit_lines(a, b, PROBE_SIZES),
        memory_curve=memory_lines(a, b, PROBE_SIZES),
        memory_start=start_line(a, b, PROBE_SIZES),
        host_ops=len(a.ops),
        syncs=sum(op.name == "_local_scalar_dense" for op in a.ops),
        host_input_s=0.0,
        samples_per_epoch=RUN_SAMPLES if named.kind == "infer" else batch,
        epochs=1,
        model_flops_per_sample=None,
        params=sum(p.numel() for p in model.parameters()),
        notes=(
            f"{named.help}; one synthetic batch reused (no host input); a run is "
            + ("1,000,000 samples" if named.kind == "infer" else "one step"),
            host_note,
        ),
        host_s=None if host is None else host_seconds(host, len(a.ops)),
    )
