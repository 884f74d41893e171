"""DP-SGD for the training loop: Opacus's per-sample clipping and noise, Poisson batches, ε.

``make_private`` turns a run's model, optimizer and training batches into their DP-SGD
versions (Opacus ``GradSampleModule`` and ``DPOptimizer``) and returns the :class:`Privacy`
that the loop asks for the ε spent. The batches become :class:`PoissonBatches`: each step
takes every training example independently with probability q = batch_size / n, the
sampling that Opacus's RDP accountant assumes. Everything random is reproducible: the
batches of an epoch are a pure function of (seed, epoch), and the noise generator's state
and the accountant's history travel in the checkpoint, so a resumed run ends with the same
weights and the same ε as an uninterrupted one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.batching import Batch, TensorBatches
from tensorfab.errors import TensorfabError
from tensorfab.spec.schema import PrivacySpec

_NOISE_SEED_OFFSET = 0x5EED  # the noise generator's seed differs from the batches' seed


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:
        raise TensorfabError("train.privacy needs opacus: pip install 'tensorfab[audit]'") from None
    return opacus


class PoissonBatches:
    """Poisson-sampled batches over a :class:`TensorBatches`' tensors, len(batches) per epoch.

    A step's batch has a random size (on average the configured batch size); the masks of
    an epoch come from a generator seeded with (seed, epoch), so ``epoch(e, start)`` skips
    exactly the batches a resumed run already trained on.
    """

    def __init__(self, batches: TensorBatches, seed: int) -> None:
        self.inner = batches
        self.seed = seed
        self.size = len(batches.tensors[0])
        self.sample_rate = min(1.0, batches.batch_size / self.size)
        self.steps = len(batches)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for i in range(self.steps):
            mask = torch.rand(self.size, generator=g) < self.sample_rate
            if i >= start_batch:
                yield self.inner.take(mask.nonzero().squeeze(1))


@dataclass
class Privacy:
    """The DP-SGD state of a run: noise, clipping, rate, accountant and noise generator."""

    spec: PrivacySpec
    noise_multiplier: float
    sample_rate: float
    accountant: Any  # opacus RDPAccountant
    generator: torch.Generator

    def step(self) -> None:
        """Account for one noisy optimizer step (called by the optimizer's step hook)."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        """ε spent so far at the spec's δ (0.0 before the first step).

        The accountant's own sum (``RDPAccountant.get_privacy_spent``: per history entry the
        RDP of one step times its steps, then the conversion to ε), with one step's RDP
        cached per (noise, rate): the same numbers, without recomputing the fractional orders
        every epoch (most of a small DP run's accounting time).
        """
        history = self.accountant.history
        if not history:
            return 0.0
        from opacus.accountants.analysis.rdp import get_privacy_spent

        rdp = sum(_rdp_of_one_step(float(s), float(q)) * n for s, q, n in history)
        eps, _ = get_privacy_spent(orders=_alphas(), rdp=rdp, delta=self.spec.delta)
        return float(eps)

    def state_dict(self) -> dict[str, Any]:
        history = [[float(s), float(q), int(n)] for s, q, n in self.accountant.history]
        return {"accountant": history, "noise_generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [(s, q, int(n)) for s, q, n in state["accountant"]]
        self.generator.set_state(state["noise_generator"])

    def summary(self) -> dict[str, Any]:
        """What the package and the report record: the guarantee and how it was reached."""
        return {
            "mechanism": "DP-SGD (Opacus, Poisson sampling, RDP accountant)",
            "epsilon": self.epsilon(),
            "delta": self.spec.delta,
            "target_epsilon": self.spec.epsilon,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.spec.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": sum(int(n) for _, _, n in self.accountant.history),
        }


def _alphas() -> list[float]:
    return list(_opacus().accountants.RDPAccountant.DEFAULT_ALPHAS)


@lru_cache(maxsize=64)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_alphas())
    rdp.setflags(write=False)  # shared by every caller
    return rdp


def noise_for(spec: PrivacySpec, sample_rate: float, steps: int) -> float:
    """The given noise multiplier, or the smallest that keeps ε <= spec.epsilon after ``steps``."""
    if spec.noise_multiplier is not None:
        return spec.noise_multiplier
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=spec.epsilon,
            target_delta=spec.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            epsilon_tolerance=0.01,
        )
    )


@dataclass
class PrivateParts:
    step_model: nn.Module
    optimizer: torch.optim.Optimizer
    train: PoissonBatches
    privacy: Privacy


def _poisson(batches: Any, seed: int, world_size: int) -> PoissonBatches:
    if not isinstance(batches, TensorBatches):
        raise TensorfabError(
            "train.privacy: Poisson sampling needs fixed-size in-memory batches; "
            f"this task's training batches ({type(batches).__name__}) are not supported"
        )
    if world_size != 1:
        raise TensorfabError("train.privacy: DP-SGD runs in a single process (no torchrun)")
    return PoissonBatches(batches, seed)


def _quiet_known_warnings() -> None:
    """Two warnings every DP run printed, neither actionable by a user: the RDP
    accountant's "optimal order is the largest alpha" (its alpha grid, not the user's
    settings) and torch's note that Opacus's full backward hooks fire with an input that
    needs no gradient (the first layer's input never does)."""
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")


def make_private(
    spec: PrivacySpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Any,
    *,
    seed: int,
    total_steps: int,
    world_size: int = 1,
) -> PrivateParts:
    """DP-SGD versions of ``model`` (for the loop), ``optimizer`` and the training batches."""
    opacus = _opacus()
    _quiet_known_warnings()
    from opacus.accountants import RDPAccountant
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise TensorfabError(
            f"train.privacy: the model cannot be trained with DP-SGD ({problems[0]})"
        )
    train = _poisson(batches, seed, world_size)
    noise = noise_for(spec, train.sample_rate, total_steps)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed + _NOISE_SEED_OFFSET)
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=noise,
        max_grad_norm=spec.max_grad_norm,
        expected_batch_size=max(1, round(train.sample_rate * train.size)),
        loss_reduction="mean",
        generator=generator,
    )
    privacy = Privacy(spec, noise, train.sample_rate, RDPAccountant(), generator)
    dp_optimizer.attach_step_hook(lambda _opt: privacy.step())
    step_model = opacus.GradSampleModule(model, batch_first=True, loss_reduction="mean")
    return PrivateParts(step_model, dp_optimizer, train, privacy)
