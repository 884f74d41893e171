"""The .inter reader and RecBole's 8:1:1 per-user split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.data import create_dataset
from tensorfab.data.movielens import interaction_splits, read_inter, split_counts
from tensorfab.errors import TensorfabError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write_inter(path: Path, users: int = 6, per_user: int = 10, items: int = 25) -> Path:
    """Each user u interacts with items u, u+1, ..., wrapping: a small ml-100k look-alike."""
    rows = [
        f"{u + 1}\t{(u + k) % items + 1}\t4\t{880000000 + k}"
        for u in range(users)
        for k in range(per_user)
    ]
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("n", "want"),
    [(20, [16, 2, 2]), (10, [8, 1, 1]), (15, [13, 1, 1]), (5, [3, 1, 1]), (2, [1, 0, 1])],
)
def test_split_counts_as_recbole_counts(n: int, want: list[int]) -> None:
    assert split_counts(n) == want


def test_every_user_is_split_8_1_1_and_parts_do_not_overlap(tmp_path: Path) -> None:
    splits = create_dataset("movielens", path=str(write_inter(tmp_path / "x.inter")))
    assert splits.users == ["1", "2", "3", "4", "5", "6"]
    for part, count in (("train", 8), ("eval", 1), ("test", 1)):
        assert torch.bincount(getattr(splits, part).user).tolist() == [count] * 6
    pairs = [
        set(zip(p.user.tolist(), p.item.tolist(), strict=True))
        for p in (splits.train, splits.eval, splits.test)
    ]
    assert sum(len(p) for p in pairs) == len(set.union(*pairs)) == 60
    # test leaves out train and eval items, eval only train items
    assert len(splits.test.excluded[0]) == 54 and len(splits.eval.excluded[0]) == 48


def test_the_split_follows_the_seed(tmp_path: Path) -> None:
    users, items = read_inter(write_inter(tmp_path / "x.inter"))
    a, b = interaction_splits(users, items, 0), interaction_splits(users, items, 0)
    c = interaction_splits(users, items, 1)
    assert torch.equal(a.test.item, b.test.item) and not torch.equal(a.test.item, c.test.item)


def test_by_user_masks(tmp_path: Path) -> None:
    write_inter(tmp_path / "x.inter")
    splits = create_dataset("movielens", path=str(tmp_path), split_seed=3)  # the folder
    users, seen, targets = splits.test.by_user()
    assert users.tolist() == list(range(6))
    assert targets.sum(1).tolist() == [1] * 6 and seen.sum(1).tolist() == [9] * 6
    assert not (seen & targets).any()


def test_a_short_row_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.inter"
    path.write_text(HEADER + "1\t2\t3\t4\n1\t2\n")
    with pytest.raises(TensorfabError, match=r"bad.inter:3: 2 columns, the header has 4"):
        read_inter(path)
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(TensorfabError, match=r"bad.inter:1: header needs user_id"):
        read_inter(path)
