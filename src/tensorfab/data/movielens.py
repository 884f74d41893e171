"""Implicit-feedback interactions in RecBole's atomic ``.inter`` format, split 8:1:1 per user.

A ``.inter`` file is tab-separated with a typed header (``user_id:token  item_id:token
rating:float  timestamp:float``); every row is one interaction, read as implicit feedback
(the rating is ignored, as RecBole does for ml-100k). The split is RecBole's "RO" split:
each user's interactions shuffled with a seed and cut 8:1:1, so every user is in all three
parts. MovieLens-100k itself is fetched by ``tensorfab data fetch movielens-100k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorfab.data.registry import DATASETS
from tensorfab.data.text_types import read_text_file
from tensorfab.errors import TensorfabError

MOVIELENS_SOURCE = {
    "name": "MovieLens-100k (GroupLens), as shipped in RecBole 1.2.1's dataset_example",
    "licence": "GroupLens research licence: no redistribution; never committed",
    "citation": (
        "F. M. Harper, J. A. Konstan, 'The MovieLens Datasets: History and Context', "
        "ACM TiiS 5(4), 2015"
    ),
}
RATIOS = (0.8, 0.1, 0.1)


@dataclass
class Interactions:
    """(user, item) index pairs of one split, plus the pairs ranking must leave out for it
    (the user's interactions in earlier splits: none for train)."""

    user: torch.Tensor  # int64 [N]
    item: torch.Tensor  # int64 [N]
    num_users: int
    num_items: int
    excluded: tuple[torch.Tensor, torch.Tensor] = field(
        default_factory=lambda: (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    )

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, index: torch.Tensor) -> Interactions:
        return Interactions(
            self.user[index], self.item[index], self.num_users, self.num_items, self.excluded
        )

    def by_user(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Users of this split, each with a mask of excluded items and one of target items."""
        users = torch.unique(self.user)
        row = torch.full((self.num_users,), -1, dtype=torch.long)
        row[users] = torch.arange(len(users))
        seen = torch.zeros(len(users), self.num_items, dtype=torch.bool)
        targets = torch.zeros(len(users), self.num_items, dtype=torch.bool)
        targets[row[self.user], self.item] = True
        ex_user, ex_item = self.excluded
        keep = row[ex_user] >= 0
        seen[row[ex_user[keep]], ex_item[keep]] = True
        return users, seen, targets


@dataclass
class InteractionSplits:
    train: Interactions
    eval: Interactions
    test: Interactions
    users: list[str]  # user index -> raw id
    items: list[str]  # item index -> raw id
    source: dict[str, str] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)


def inter_file(path: str | Path) -> Path:
    """``path`` itself, or the one ``*.inter`` file in the folder ``path`` (``~`` expanded)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(p.glob("*.inter"))
        if len(found) != 1:
            raise TensorfabError(f"{p}: expected one *.inter file, found {len(found)}")
        return found[0]
    if not p.is_file():
        raise TensorfabError(f"{p}: no such file or folder")
    return p


def read_inter(path: str | Path) -> tuple[list[str], list[str]]:
    """Raw user and item ids of every interaction; errors name file:line."""
    p = inter_file(path)
    lines = read_text_file(p).splitlines()
    header = lines[0].split("\t") if lines else []
    names = [h.split(":")[0] for h in header]
    if "user_id" not in names or "item_id" not in names:
        raise TensorfabError(f"{p}:1: header needs user_id:token and item_id:token columns")
    u, i = names.index("user_id"), names.index("item_id")
    users, items = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise TensorfabError(
                f"{p}:{number}: {len(cells)} columns, the header has {len(header)}"
            )
        users.append(cells[u])
        items.append(cells[i])
    if not users:
        raise TensorfabError(f"{p}: no interactions")
    return users, items


def split_counts(n: int, ratios: tuple[float, ...] = RATIOS) -> list[int]:
    """How many of a user's ``n`` interactions go to each part, as RecBole counts them:
    floor for the later parts, bumped to one where the share is between 0 and 1."""
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for k in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-k] * n < 1:
            counts[-k] += 1
            counts[0] -= 1
    return counts


def split_per_user(user: np.ndarray, seed: int) -> np.ndarray:
    """Part (0 train, 1 eval, 2 test) of every interaction: each user's shuffled 8:1:1."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(user), dtype=np.int64)
    order = np.argsort(user, kind="stable")
    starts = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(user)], strict=True):
        rows = rng.permutation(order[start:end])
        counts = split_counts(len(rows))
        part[rows[counts[0] : counts[0] + counts[1]]] = 1
        part[rows[counts[0] + counts[1] :]] = 2
    return part


def interaction_splits(users: list[str], items: list[str], seed: int = 0) -> InteractionSplits:
    """Raw interactions -> index pairs split 8:1:1 per user; duplicates kept once."""
    pairs = sorted(set(zip(users, items, strict=True)))
    user_ids = sorted({u for u, _ in pairs}, key=_id_key)
    item_ids = sorted({i for _, i in pairs}, key=_id_key)
    u_index = {u: k for k, u in enumerate(user_ids)}
    i_index = {i: k for k, i in enumerate(item_ids)}
    user = np.array([u_index[u] for u, _ in pairs], dtype=np.int64)
    item = np.array([i_index[i] for _, i in pairs], dtype=np.int64)
    part = split_per_user(user, seed)
    nu, ni = len(user_ids), len(item_ids)

    def take(mask: np.ndarray, excluded: np.ndarray | None) -> Interactions:
        ex = (
            (torch.from_numpy(user[excluded]), torch.from_numpy(item[excluded]))
            if excluded is not None
            else (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        )
        return Interactions(torch.from_numpy(user[mask]), torch.from_numpy(item[mask]), nu, ni, ex)

    split = {
        "method": "random per user (RecBole RO)",
        "fractions": list(RATIOS),
        "seed": seed,
        "train_size": int((part == 0).sum()),
        "eval_size": int((part == 1).sum()),
        "test_size": int((part == 2).sum()),
    }
    return InteractionSplits(
        take(part == 0, None),
        take(part == 1, part == 0),
        take(part == 2, part <= 1),
        user_ids,
        item_ids,
        dict(MOVIELENS_SOURCE),
        split,
    )


def _id_key(raw: str) -> tuple[int, int | str]:
    return (0, int(raw)) if raw.isdigit() else (1, raw)


@DATASETS.register("movielens")
def build_movielens(*, path: str, split_seed: int = 0) -> InteractionSplits:
    """A ``.inter`` file (or a folder holding one), split 8:1:1 per user with ``split_seed``."""
    users, items = read_inter(path)
    splits = interaction_splits(users, items, int(split_seed))
    splits.source = {**splits.source, "path": str(inter_file(path))}
    return splits
