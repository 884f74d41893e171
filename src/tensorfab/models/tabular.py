"""An MLP for tables: standardised numeric columns plus one embedding per categorical column.

Each categorical column's codes index its own embedding table (code 0: missing or unseen);
the embeddings and the numeric values are concatenated and go through ReLU hidden layers
with dropout. Standardisation happens before the model (the task's inference graph).
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.registry import MODELS


def embedding_dim(cardinality: int, max_dim: int = 16) -> int:
    """fast.ai's rule of thumb for an embedding's width, capped."""
    return max(2, min(max_dim, round(1.6 * cardinality**0.56)))


class TabularMLP(nn.Module):
    def __init__(
        self,
        num_classes: int,
        num_numeric: int,
        cardinalities: list[int],
        hidden: tuple[int, ...] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        # cardinality + 1: code 0 is "missing or not seen in training"
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, embedding_dim(c + 1)) for c in cardinalities
        )
        width = num_numeric + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        # numeric: float [B, Nn] standardised; codes: int64 [B, Nc]
        parts = [numeric] + [e(codes[:, i]) for i, e in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))


@MODELS.register(
    "tabular-mlp",
    task="tabular-classification",
    input="table",
    tiny={"hidden": [8]},
)
def build_tabular_mlp(
    num_classes: int = 2,
    num_numeric: int = 0,
    cardinalities: list[int] | None = None,
    hidden: list[int] | tuple[int, ...] = (128, 64),
    dropout: float = 0.1,
) -> nn.Module:
    return TabularMLP(num_classes, num_numeric, list(cardinalities or []), tuple(hidden), dropout)
