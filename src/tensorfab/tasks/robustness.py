"""What a task needs to measure its own robustness, a few lines each.

Images: the fast gradient sign method (Goodfellow et al. 2015) and projected gradient
descent (Madry et al. 2018), untargeted, L-infinity, in pixel space (0..1), so ``eps`` is a
fraction of the pixel range whatever the normalisation. Texts: character-level noise
(a letter swapped with its neighbour, dropped, doubled or replaced) at a given rate per
character, seeded. Each task calls these on its own inputs; nothing here knows a task.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

import torch

IMAGE_ATTACKS: tuple[tuple[str, float], ...] = (
    ("none", 0.0),
    ("fgsm", 0.05),
    ("fgsm", 0.1),
    ("fgsm", 0.2),
    ("pgd", 0.05),
    ("pgd", 0.1),
    ("pgd", 0.2),
)
TEXT_NOISE: tuple[tuple[str, float], ...] = (
    ("none", 0.0),
    ("char-noise", 0.05),
    ("char-noise", 0.1),
    ("char-noise", 0.2),
)
PGD_STEPS = 10

LossFn = Callable[[torch.Tensor], torch.Tensor]


def _gradient(loss_of: LossFn, pixels: torch.Tensor) -> torch.Tensor:
    x = pixels.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(x), x)
    return grad


def fgsm(loss_of: LossFn, pixels: torch.Tensor, eps: float) -> torch.Tensor:
    """One step of size ``eps`` along the sign of the loss gradient, clipped to 0..1."""
    return (pixels + eps * _gradient(loss_of, pixels).sign()).clamp(0, 1).detach()


def pgd(loss_of: LossFn, pixels: torch.Tensor, eps: float, steps: int = PGD_STEPS) -> torch.Tensor:
    """``steps`` signed-gradient steps of 2.5 eps / steps, projected back into the eps-ball
    around ``pixels`` and into 0..1 after each (Madry et al.'s step size, no random start)."""
    alpha = 2.5 * eps / steps
    adv = pixels.detach().clone()
    for _ in range(steps):
        adv = adv + alpha * _gradient(loss_of, adv).sign()
        adv = torch.min(torch.max(adv, pixels - eps), pixels + eps).clamp(0, 1).detach()
    return adv


def attack(name: str, loss_of: LossFn, pixels: torch.Tensor, eps: float) -> torch.Tensor:
    """``pixels`` under the named attack ("none" leaves them as they are)."""
    if name == "fgsm":
        return fgsm(loss_of, pixels, eps)
    if name == "pgd":
        return pgd(loss_of, pixels, eps)
    return pixels


def char_noise(text: str, rate: float, rng: random.Random) -> str:
    """Each letter, with probability ``rate``: swapped with the next one, dropped, doubled
    or replaced by a random lowercase letter. A one-character word is never dropped, so
    word counts (and a token task's tags) stay aligned."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        ch = chars[i]
        if not ch.isalpha() or rng.random() >= rate:
            out.append(ch)
            i += 1
            continue
        edit = rng.choice(("swap", "drop", "double", "replace"))
        if edit == "swap" and i + 1 < len(chars) and chars[i + 1].isalpha():
            out += [chars[i + 1], ch]
            i += 2
            continue
        if edit == "drop" and len(text.strip()) > 1:
            i += 1
            continue
        out += [ch, ch] if edit == "double" else [rng.choice(string.ascii_lowercase)]
        i += 1
    return "".join(out)


def scores_on(task: Any, model: torch.nn.Module, data: Any, batch_size: int, device: Any) -> dict:
    """The task's metrics of ``model`` on (perturbed) ``data``: one unshuffled pass, no
    gradients, the same steps as an evaluation; a perturbation's row is built from these."""
    outputs = []
    with torch.no_grad():
        for batch in task.eval_batches(data, batch_size, device).epoch(0):
            outputs.append(task.eval_step(task.logits(model, batch), batch))
    return task.eval_scores(outputs)
