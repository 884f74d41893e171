"""The real language data sets from the shared folder beside the repository, read end to end.

Every count below is the one the data set's SOURCE.md records.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tensorfab.data.conll import build_conll
from tensorfab.data.text import build_text, read_phrasebank
from tensorfab.data.text_types import TextSplits


def _repo_root() -> Path:
    """The folder that holds ``tests/``, however deep this file sits below it."""
    here = Path(__file__).resolve()
    return next(p.parent for p in here.parents if p.name == "tests")


DATA = _repo_root().parent / "shared" / "data"
CONLL_TRAIN_TAGS = {
    "O": 169578,
    "B-LOC": 7140,
    "I-LOC": 1157,
    "B-MISC": 3438,
    "I-MISC": 1155,
    "B-ORG": 6321,
    "I-ORG": 3704,
    "B-PER": 6600,
    "I-PER": 4528,
}


def _folder(name: str) -> Path:
    folder = DATA / name
    if not folder.is_dir():
        pytest.skip(f"../shared/data/{name} not found: looked in {folder}")
    return folder


@pytest.fixture(scope="module")
def conll() -> TextSplits:
    folder = _folder("conll2003")
    return build_conll(path=str(folder / "train.txt"), eval_path=str(folder / "valid.txt"))


def test_conll2003(conll: TextSplits) -> None:
    assert (len(conll.train), sum(len(s) for s in conll.train)) == (14041, 203621)
    assert (len(conll.eval), sum(len(s) for s in conll.eval)) == (3250, 51362)
    assert Counter(t for s in conll.train for t in s.tags) == CONLL_TRAIN_TAGS
    assert conll.split["scheme"] == {"train": "iob2", "eval": "iob2"}  # read unchanged
    assert conll.labels == ["O", *(f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI")]
    assert conll.source["name"] == "CoNLL-2003 English" and conll.test is conll.eval
    assert conll.train[0].words[:2] == ["EU", "rejects"]


def test_phrasebank_50agree() -> None:
    path = _folder("financial_phrasebank") / "Sentences_50Agree.txt"
    examples = read_phrasebank(path)
    assert len(examples) == 4846 and len(set(examples)) == 4840
    assert Counter(e.label for e in examples) == {
        "negative": 604,
        "neutral": 2879,
        "positive": 1363,
    }
    splits = build_text(path=str(path), dedupe=True)
    sizes = [len(splits.train), len(splits.eval), len(splits.test)]
    assert sum(sizes) == 4840 and sizes == [3872, 484, 484]
    assert splits.split["duplicates_removed"] == 6
    assert splits.labels == ["negative", "neutral", "positive"]
    assert splits.source["licence"] == "CC BY-NC-SA 3.0 (non-commercial)"


def test_sst2() -> None:
    folder = _folder("sst2")
    splits = build_text(
        path=str(folder / "train.tsv"), eval_path=str(folder / "dev.tsv"), text_column="sentence"
    )
    assert len(splits.train) == 67349 and len(splits.eval) == 872
    assert Counter(e.label for e in splits.train) == {"0": 29780, "1": 37569}
    assert Counter(e.label for e in splits.eval) == {"0": 428, "1": 444}
    assert splits.labels == ["0", "1"] and splits.source["name"] == "SST-2 (GLUE)"
