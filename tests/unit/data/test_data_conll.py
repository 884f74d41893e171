"""CoNLL column files: IOB2 kept, IOB1 converted, scheme detection, every malformed line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tensorfab.data.conll import (
    build_conll,
    conll_source,
    detect_scheme,
    read_conll,
    tag_labels,
    to_iob2,
)
from tensorfab.data.text_types import TokenExample
from tensorfab.errors import TensorfabError

# two documents, three sentences; the last sentence has no blank line after it
IOB2_FILE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

New NNP B-NP B-LOC
York NNP I-NP I-LOC
rains VBZ B-VP O"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sentences(text: str) -> str:
    """A file of ``token TAG`` lines, one sentence per ';'-separated group."""
    groups = [g.split() for g in text.split(";")]
    return "\n\n".join("\n".join(f"w{i} {tag}" for i, tag in enumerate(g)) for g in groups) + "\n"


def test_iob2_file_read_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", IOB2_FILE)
    examples = read_conll(path)
    assert [len(e) for e in examples] == [4, 2, 3]
    assert examples[0] == TokenExample(
        ["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"], 0
    )
    assert (examples[1].tags, examples[1].doc) == (["B-PER", "I-PER"], 0)
    assert examples[2] == TokenExample(["New", "York", "rains"], ["B-LOC", "I-LOC", "O"], 1)
    assert read_conll(path, scheme="iob2") == examples == read_conll(path, scheme="iob1")


def test_blank_lines_and_crlf(tmp_path: Path) -> None:
    text = (
        "\r\n\r\n-DOCSTART- O\r\n\r\n\r\na B-X\r\nb I-X\r\n\r\n\r\n-DOCSTART- O\r\n\r\nc O\r\n\r\n"
    )
    examples = read_conll(write(tmp_path / "t.txt", text))
    # each -DOCSTART- after a sentence starts the next document
    assert examples == [TokenExample(["a", "b"], ["B-X", "I-X"], 0), TokenExample(["c"], ["O"], 1)]


def test_iob1_converted(tmp_path: Path) -> None:
    path = write(tmp_path / "eng.train", sentences("I-PER I-PER O I-LOC B-LOC; O I-ORG I-MISC"))
    examples = read_conll(path)
    assert examples[0].tags == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert examples[1].tags == ["O", "B-ORG", "B-MISC"]
    assert read_conll(path, scheme="iob2")[0].tags == ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]


@pytest.mark.parametrize(
    ("tags", "scheme"),
    [
        (["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], "iob2"),
        (["O", "O"], "iob2"),
        (["I-PER", "O"], "iob1"),
        (["B-PER", "I-LOC"], "iob1"),  # I-LOC does not continue a LOC entity
        (["B-LOC", "I-LOC", "O", "I-LOC"], "iob1"),
    ],
)
def test_detect_scheme(tags: list[str], scheme: str) -> None:
    assert detect_scheme([["O"], tags]) == scheme


def test_to_iob2_keeps_iob2() -> None:
    tags = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC"]
    assert to_iob2(tags) == tags
    assert to_iob2(["I-PER", "I-LOC", "I-LOC", "B-LOC"]) == ["B-PER", "B-LOC", "I-LOC", "B-LOC"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "EU NNP B-NP B-ORG\nEU\n",
            "bad.txt:2: expected 'token POS chunk NER' (at least 2 columns), found 1: 'EU'",
        ),
        ("a O\n\nb X-PER\n", "bad.txt:3: tag 'X-PER' is not O, B-<type> or I-<type>"),
        ("a B-\n", "bad.txt:1: tag 'B-' is not O, B-<type> or I-<type>"),
        ("a S-PER\n", "bad.txt:1: tag 'S-PER' is not O, B-<type> or I-<type>"),
    ],
)
def test_malformed_lines(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(TensorfabError, match=f"^{re.escape(str(tmp_path / message))}$"):
        read_conll(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a O\n\nb\xff O\n")
    with pytest.raises(TensorfabError, match=re.escape(f"{path}:3: invalid UTF-8 (byte 0xff")):
        read_conll(path)


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "empty.txt", text)
    with pytest.raises(TensorfabError, match=f"^{re.escape(str(path))}: no sentences found"):
        read_conll(path)


def test_missing_file_and_bad_scheme(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"nope.txt: file not found"):
        read_conll(tmp_path / "nope.txt")
    path = write(tmp_path / "t.txt", "a O\n")
    with pytest.raises(TensorfabError, match="unknown tag scheme 'bio'; use one of: auto, iob1"):
        read_conll(path, scheme="bio")


def test_tag_labels_order() -> None:
    examples = [
        TokenExample(["a", "b"], ["B-PER", "I-PER"]),
        TokenExample(["c", "d", "e"], ["O", "B-LOC", "B-MISC"]),  # LOC, MISC only as B-
    ]
    assert tag_labels(examples) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    assert tag_labels([TokenExample(["x"], ["O"])]) == ["O"]


def test_build_with_given_files(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", IOB2_FILE)
    valid = write(tmp_path / "valid.txt", sentences("I-PER O; I-LOC I-LOC"))
    splits = build_conll(path=str(train), eval_path=str(valid))
    assert (len(splits.train), len(splits.eval)) == (3, 2)
    assert splits.test is splits.eval
    assert splits.eval[1].tags == ["B-LOC", "I-LOC"]
    assert splits.labels == tag_labels(splits.train) and splits.num_labels == 9
    assert splits.split["method"] == "given" and splits.split["test"] == "eval"
    assert splits.split["scheme"] == {"train": "iob2", "eval": "iob1"}
    assert splits.source["name"] == "train" and splits.source["licence"] == "unknown (user data)"


def test_build_held_out_split(tmp_path: Path) -> None:
    groups = ";".join(["B-PER O", "O O O", "B-LOC I-LOC"] * 10)
    train = str(write(tmp_path / "train.txt", sentences(groups)))
    a = build_conll(path=train, split_seed=1)
    b = build_conll(path=train, split_seed=1)
    c = build_conll(path=train, split_seed=2)
    assert (len(a.train), len(a.eval), len(a.test)) == (27, 3, 3)
    assert a.eval == b.eval and a.eval != c.eval and a.test is a.eval
    assert a.split == {
        "method": "random",
        "eval_fraction": 0.1,
        "seed": 1,
        "test": "eval",
        "scheme": {"train": "iob2"},
        "train_size": 27,
        "eval_size": 3,
        "test_size": 3,
    }
    limited = build_conll(path=train, limit_train=5, limit_eval=1)
    assert (len(limited.train), len(limited.eval)) == (5, 1)
    assert limited.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_build_unseen_tag_in_eval(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", sentences("B-PER O"))
    test = write(tmp_path / "test.txt", sentences("B-PER; B-ORG"))
    with pytest.raises(TensorfabError, match=r"test.txt: tag\(s\) B-ORG do not occur in the train"):
        build_conll(path=str(train), eval_path=str(train), test_path=str(test))


def test_source_for_conll2003() -> None:
    source = conll_source("/data/conll2003/train.txt")
    assert source["name"] == "CoNLL-2003 English"
    assert source["licence"].startswith("Reuters RCV1 text: research use only")
    assert "Tjong Kim Sang" in source["citation"] and source["path"] == "/data/conll2003/train.txt"
    assert conll_source("x/eng.testa")["name"] == "CoNLL-2003 English"
