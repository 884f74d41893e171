"""An ensemble of trained models of one architecture, run as one model.

Its output is the mean of the members' log-probabilities over the classes (the last axis
of each member's ``logits``), so every consumer of a model (evaluation, ``predict``, the
ONNX graph, the server) runs an ensemble exactly as it runs one member: the mean is in
the graph. A CRF head's decoding reads one set of weights: the ensemble registers the
mean of its members' ``crf_weights`` as its own (first among its parameters, which is
where :func:`tasks.token_classification.crf_parameter` looks), and the package's
``task_config`` records the same mean. Measured on CoNLL-2003 (README, issue 20): two
seeds of one configuration, +0.4 F1 points for twice the inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorfab.models.crf import CRF_PARAM


@dataclass
class EnsembleOutput:
    """What a member's output is to its readers: ``logits`` (here log-probabilities)."""

    logits: torch.Tensor


class Ensemble(nn.Module):
    """``members`` (built alike, weights of their own) -> mean log-probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        crf = [getattr(m, CRF_PARAM, None) for m in members]
        if all(w is not None for w in crf):
            mean = torch.stack([w.detach().float() for w in crf]).mean(0)
            self.register_parameter(CRF_PARAM, nn.Parameter(mean))
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> Any:
        """The members' architecture (one config: they are built alike)."""
        return self.members[0].config

    def forward(self, **inputs: torch.Tensor) -> EnsembleOutput:
        logp = [m(**inputs).logits.float().log_softmax(-1) for m in self.members]
        return EnsembleOutput(torch.stack(logp).mean(0))
