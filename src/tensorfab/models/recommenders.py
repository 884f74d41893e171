"""Implicit-feedback recommenders: MF (BPR or softmax), NeuMF (He et al. 2017), two-tower.

Every model scores users against items in two ways: ``pairs(users [B], items [B, K]) ->
[B, K]`` for training on sampled items, and ``forward(users [B]) -> [B, num_items]``, all
items at once, for ranking and serving. The registry's ``loss`` says how the task trains
it: ``bpr`` (one sampled negative per positive), ``bce`` (NCF: four sampled negatives),
``in-batch`` (softmax over the batch's positives, towers only) or ``softmax`` (the positive's
cross-entropy over every item: the softmax loss of Covington et al., RecSys 2016, exact
rather than sampled since a catalogue of 1,682 items is one small matrix product; Wu et
al., "On the Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024,
compare it with BPR).
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.registry import MODELS

TINY = {"dim": 8}


def _embedding(n: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(n, dim)
    nn.init.normal_(table.weight, std=0.1)
    return table


class MatrixFactorization(nn.Module):
    """score(u, i) = <p_u, q_i>."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__()
        self.users, self.items = _embedding(num_users, dim), _embedding(num_items, dim)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.users(users)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.items(items)

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_vectors(users)[:, None] * self.item_vectors(items)).sum(-1)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(users) @ self.items.weight.T


class TwoTower(MatrixFactorization):
    """Each side an embedding and a two-layer tower; score = dot product of the towers."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__(num_users, num_items, dim)
        self.user_tower = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.users(users))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_tower(self.items(items))

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(users) @ self.item_tower(self.items.weight).T


class NeuMF(nn.Module):
    """GMF (element-wise product) and an MLP over [p_u; q_i], fused by one output layer.

    The MLP's first layer is applied to the user and item halves separately and summed,
    which equals it on the concatenation and lets all items be scored without B x N copies.
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.gmf_users, self.gmf_items = _embedding(num_users, dim), _embedding(num_items, dim)
        self.mlp_users, self.mlp_items = _embedding(num_users, dim), _embedding(num_items, dim)
        self.first_user = nn.Linear(dim, hidden)
        self.first_item = nn.Linear(dim, hidden, bias=False)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU())
        self.out = nn.Linear(2 * dim, 1)

    def _score(self, gu: torch.Tensor, gi: torch.Tensor, hu: torch.Tensor, hi: torch.Tensor):
        gmf = gu * gi
        mlp = self.mlp(hu + hi)
        return self.out(torch.cat([gmf, mlp.expand_as(gmf)], dim=-1)).squeeze(-1)

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        gu, hu = self.gmf_users(users)[:, None], self.first_user(self.mlp_users(users))[:, None]
        return self._score(gu, self.gmf_items(items), hu, self.first_item(self.mlp_items(items)))

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        gu, hu = self.gmf_users(users)[:, None], self.first_user(self.mlp_users(users))[:, None]
        gi = self.gmf_items.weight[None]
        hi = self.first_item(self.mlp_items.weight)[None]
        return self._score(gu.expand(-1, gi.shape[1], -1), gi.expand(len(users), -1, -1), hu, hi)


@MODELS.register("mf-bpr", task="recommendation", input="user", loss="bpr", tiny=TINY)
def build_mf_bpr(num_users: int, num_items: int, dim: int = 64) -> nn.Module:
    return MatrixFactorization(num_users, num_items, dim)


@MODELS.register("mf-softmax", task="recommendation", input="user", loss="softmax", tiny=TINY)
def build_mf_softmax(num_users: int, num_items: int, dim: int = 64) -> nn.Module:
    return MatrixFactorization(num_users, num_items, dim)


@MODELS.register("neumf", task="recommendation", input="user", loss="bce", tiny=TINY)
def build_neumf(num_users: int, num_items: int, dim: int = 32, hidden: int = 64) -> nn.Module:
    return NeuMF(num_users, num_items, dim, hidden)


@MODELS.register("two-tower", task="recommendation", input="user", loss="in-batch", tiny=TINY)
def build_two_tower(num_users: int, num_items: int, dim: int = 64) -> nn.Module:
    return TwoTower(num_users, num_items, dim)
