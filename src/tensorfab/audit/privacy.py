"""Membership inference: how well a model's loss tells its training examples from others.

The loss-threshold attack (Yeom et al. 2018) guesses "member" when an example's loss is
low. Over every threshold, its power is the attack AUC: the probability that a random
training example (member) has a lower loss than a random held-out one (non-member), ties
counting one half. 0.5 means the loss leaks nothing about membership; a bootstrap over
both sets gives the confidence interval. Members are the package's training split and
non-members its test split, rebuilt from the data spec the package records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.engine.train import build_workload
from tensorfab.errors import TensorfabError
from tensorfab.package import load_package
from tensorfab.spec import JobSpec
from tensorfab.tasks import Placement


def attack_auc(member_loss: np.ndarray, nonmember_loss: np.ndarray) -> float:
    """P(member loss < non-member loss) + 1/2 P(equal): the loss-threshold attack's AUC."""
    if len(member_loss) == 0 or len(nonmember_loss) == 0:
        raise TensorfabError(
            "membership inference needs members and non-members (one set is empty)"
        )
    others = np.sort(np.asarray(nonmember_loss, dtype=np.float64))
    m = np.asarray(member_loss, dtype=np.float64)
    right = np.searchsorted(others, m, side="right")
    left = np.searchsorted(others, m, side="left")
    wins = (len(others) - right).sum() + 0.5 * (right - left).sum()
    return float(wins / (len(m) * len(others)))


def bootstrap_ci(
    member_loss: np.ndarray,
    nonmember_loss: np.ndarray,
    *,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`attack_auc`, each set resampled on its own."""
    rng = np.random.default_rng(seed)
    m, n = np.asarray(member_loss), np.asarray(nonmember_loss)
    aucs = [attack_auc(rng.choice(m, len(m)), rng.choice(n, len(n))) for _ in range(rounds)]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


@torch.no_grad()
def per_example_loss(model: nn.Module, task: Any, batches: Any) -> np.ndarray:
    """The task's loss of every example, one by one from each batch's logits."""
    model.eval()
    losses: list[float] = []
    for batch in batches:
        logits = task.logits(model, batch)
        for i in range(len(batch[0])):
            one = tuple(t[i : i + 1] for t in batch)
            losses.append(float(task.loss(logits[i : i + 1], one)))
    return np.asarray(losses)


def _job_of(meta: dict[str, Any]) -> JobSpec:
    """The data part of the job that trained the package (its split, seeds and format)."""
    try:
        return JobSpec(
            task=meta["task"],
            data=meta["data"]["spec"],
            model={"name": meta["model"]["name"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TensorfabError(f"tensorfab.json: cannot rebuild the training data ({exc})") from None


@dataclass
class MembershipResult:
    auc: float
    ci: tuple[float, float]
    members: int
    nonmembers: int
    member_loss: float
    nonmember_loss: float
    privacy: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": "loss-threshold membership inference",
            "auc": self.auc,
            "auc_ci95": list(self.ci),
            "members": self.members,
            "nonmembers": self.nonmembers,
            "mean_loss": {"members": self.member_loss, "nonmembers": self.nonmember_loss},
            "privacy": self.privacy,
        }


def membership_inference(
    model_path: str | Path, *, batch_size: int = 512, rounds: int = 1000, seed: int = 0
) -> MembershipResult:
    """Attack the package at ``model_path`` (a run or package directory) on its own data."""
    loaded = load_package(model_path)
    workload, _ = build_workload(_job_of(loaded.meta))
    where = Placement(torch.device("cpu"))
    losses = {
        split: per_example_loss(
            loaded.model,
            loaded.task,
            workload.make_batches(split, batch_size, False, where).epoch(0),
        )
        for split in ("train", "test")
    }
    members, others = losses["train"], losses["test"]
    return MembershipResult(
        auc=attack_auc(members, others),
        ci=bootstrap_ci(members, others, rounds=rounds, seed=seed),
        members=len(members),
        nonmembers=len(others),
        member_loss=float(members.mean()),
        nonmember_loss=float(others.mean()),
        privacy=loaded.meta.get("privacy"),
    )


def markdown(result: MembershipResult, model: str) -> str:
    """The result as a short markdown report."""
    p = result.privacy
    eps = f"ε = {p['epsilon']:.2f} (δ = {p['delta']:g})" if p else "none (not trained with DP-SGD)"
    low, high = result.ci
    return "\n".join(
        [
            f"# Membership inference: {model}",
            "",
            "| | |",
            "| --- | --- |",
            "| attack | loss threshold (members = train split, non-members = test split) |",
            f"| attack AUC | {result.auc:.4f} (95 % CI {low:.4f}-{high:.4f}) |",
            f"| members / non-members | {result.members} / {result.nonmembers} |",
            f"| mean loss members / non-members | {result.member_loss:.4f} / "
            f"{result.nonmember_loss:.4f} |",
            f"| differential privacy | {eps} |",
            "",
        ]
    )
