"""Text classification files: CSV/TSV/JSONL round trips, PhraseBank, splits, dedupe, errors."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tensorfab.data.text import (
    build_text,
    file_text_format,
    read_phrasebank,
    read_text_examples,
    read_text_table,
    text_format,
    text_source,
)
from tensorfab.data.text_types import TextExample
from tensorfab.errors import TensorfabError

ROWS = [
    TextExample('a "quoted" word , and more', "1"),
    TextExample("plain, with a comma", "0"),
    TextExample("it's fine", "1"),
]


def write_table(path: Path, rows: list[TextExample], text_column: str = "text") -> Path:
    if path.suffix == ".jsonl":
        lines = [
            json.dumps({"id": i, text_column: r.text, "label": int(r.label)})
            for i, r in enumerate(rows)
        ]
        path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
        return path
    with path.open("w", encoding="utf-8", newline="") as f:
        if path.suffix == ".tsv":  # written by hand, like GLUE: no quoting at all
            f.write(f"{text_column}\tlabel\n")
            f.writelines(f"{r.text}\t{r.label}\n" for r in rows)
        else:
            writer = csv.writer(f)
            writer.writerow(["label", text_column])
            writer.writerows([r.label, r.text] for r in rows)
    return path


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl"])
def test_table_round_trip(tmp_path: Path, name: str) -> None:
    path = write_table(tmp_path / name, ROWS, text_column="sentence")
    assert read_text_table(path, text_column="sentence") == ROWS
    assert read_text_examples(path, text_column="sentence") == ROWS


def test_tsv_keeps_a_lone_double_quote(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\n" the film \t0\nhe said "no\t1\n', encoding="utf-8")
    assert read_text_table(path, text_column="sentence") == [
        TextExample('" the film ', "0"),
        TextExample('he said "no', "1"),
    ]


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes('\ufefftext,label\r\n"multi\r\nline",pos\r\nb,neg\r\n'.encode())
    assert read_text_table(path) == [TextExample("multi\r\nline", "pos"), TextExample("b", "neg")]


def test_missing_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "d.csv", ROWS)
    with pytest.raises(
        TensorfabError,
        match=re.escape(f"{path}: no column 'sentence'; columns found: 'label', 'text' (set data."),
    ):
        read_text_table(path, text_column="sentence")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.tsv", "text\tlabel\na\t1\nb\t\n", "d.tsv:3: empty label"),
        ("d.tsv", "text\tlabel\na\t1\n\nb\n", "d.tsv:4: missing label"),
        ("d.csv", "label,text\n1,a\n0\n", "d.csv:3: text missing"),
        ("d.csv", "label,text\n1,  \n", "d.csv:2: empty text"),
        (
            "d.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": 1\n',
            "d.jsonl:2: invalid JSON",
        ),
        ("d.jsonl", '{"text": "a", "label": null}\n', "d.jsonl:1: missing label"),
        ("d.jsonl", "\n[1, 2]\n", "d.jsonl:2: expected a JSON object, found list"),
        (
            "d.jsonl",
            '{"txt": "a", "label": 1}\n',
            "d.jsonl:1: no field 'text'; fields found: 'txt'",
        ),
        ("d.csv", "text,label\n", "d.csv: no examples found"),
        ("d.csv", "", "d.csv: empty file; expected a header row"),
    ],
)
def test_bad_rows(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TensorfabError, match=f"^{re.escape(str(tmp_path / message))}"):
        read_text_table(path)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(b"text\tlabel\nok\t1\nbad \xc3\x28\t0\n")
    with pytest.raises(TensorfabError, match=re.escape(f"{path}:3: invalid UTF-8 (byte 0xc3 at")):
        read_text_table(path)


def test_format_by_suffix(tmp_path: Path) -> None:
    assert text_format("a.CSV") == "csv" and text_format("a.json") == "jsonl"
    assert text_format("x/Sentences_50Agree.txt") == "phrasebank"
    assert text_format("a.txt", "tsv") == "tsv"
    with pytest.raises(
        TensorfabError, match=r"a.txt: cannot tell the format from the suffix '.txt'"
    ):
        text_format("a.txt")
    with pytest.raises(TensorfabError, match="unknown text format 'xml'; use one of: auto, csv"):
        text_format("a.csv", "xml")


def test_phrasebank_parsing(tmp_path: Path) -> None:
    path = tmp_path / "Sentences_AllAgree.txt"
    lines = [
        "Profit rose 5 % .@positive",
        "Mail us @ info@example.com .@neutral",
        "Caf\xe9 fell@negative",
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    assert read_phrasebank(path) == [
        TextExample("Profit rose 5 % .", "positive"),
        TextExample("Mail us @ info@example.com .", "neutral"),
        TextExample("Café fell", "negative"),
    ]
    assert read_text_examples(path) == read_phrasebank(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("no at sign here", "p.txt:2: expected 'sentence@label', found 'no at sign here'"),
        ("Sales fell@bad", "p.txt:2: label 'bad' is not one of negative, neutral, positive"),
        ("Sales fell@", "p.txt:2: label '' is not one of negative, neutral, positive"),
    ],
)
def test_phrasebank_bad_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(f"Fine .@neutral\r\n{line}\r\n".encode("latin-1"))
    with pytest.raises(TensorfabError, match=f"^{re.escape(str(tmp_path / message))}$"):
        read_phrasebank(path)


def balanced(n_per_label: int) -> list[TextExample]:
    return [TextExample(f"{label} text {i}", label) for label in "abc" for i in range(n_per_label)]


def test_stratified_split(tmp_path: Path) -> None:
    path = str(
        write_table(
            tmp_path / "d.jsonl",
            [TextExample(e.text, str("abc".index(e.label))) for e in balanced(20)],
        )
    )
    a = build_text(path=path, split_seed=3)
    assert (len(a.train), len(a.eval), len(a.test)) == (48, 6, 6)
    assert a.labels == ["0", "1", "2"]
    for part in (a.train, a.eval, a.test):
        assert set(Counter(e.label for e in part)) == {"0", "1", "2"}
    assert Counter(e.label for e in a.test) == {"0": 2, "1": 2, "2": 2}
    assert len({e.text for e in a.train + a.eval + a.test}) == 60
    b, c = build_text(path=path, split_seed=3), build_text(path=path, split_seed=4)
    assert (a.train, a.eval, a.test) == (b.train, b.eval, b.test)
    assert a.test != c.test
    assert a.split == {
        "method": "stratified",
        "dedupe": False,
        "fractions": [0.8, 0.1, 0.1],
        "seed": 3,
        "test": "stratified",
        "train_size": 48,
        "eval_size": 6,
        "test_size": 6,
    }
    assert a.source["licence"] == "unknown (user data)"


def test_dedupe(tmp_path: Path) -> None:
    path = tmp_path / "Sentences_50Agree.txt"
    rows = [f"{e.text}@{'neutral' if e.label == 'a' else 'positive'}" for e in balanced(10)]
    rows += rows[:3] + ["s 0@negative"] * 3 + [f"s {i}@negative" for i in range(1, 10)]
    path.write_bytes("\r\n".join(rows).encode("latin-1"))
    plain = build_text(path=str(path))
    deduped = build_text(path=str(path), dedupe=True)
    assert sum(len(p) for p in (plain.train, plain.eval, plain.test)) == 45
    sizes = [len(p) for p in (deduped.train, deduped.eval, deduped.test)]
    assert sizes == [32, 4, 4] and deduped.split["duplicates_removed"] == 5
    assert deduped.labels == ["negative", "neutral", "positive"]
    assert deduped.source["licence"] == "CC BY-NC-SA 3.0 (non-commercial)"


def test_given_eval_and_test(tmp_path: Path) -> None:
    train = str(write_table(tmp_path / "train.tsv", ROWS))
    dev = str(write_table(tmp_path / "dev.tsv", ROWS[:2]))
    splits = build_text(path=train, eval_path=dev, limit_train=1)
    assert splits.test is splits.eval and len(splits.train) == 1 and splits.labels == ["0", "1"]
    assert splits.split["method"] == "given" and splits.split["test"] == "eval"
    test = tmp_path / "test.tsv"
    test.write_text("text\tlabel\nx\t2\n", encoding="utf-8")
    with pytest.raises(TensorfabError, match=r"test.tsv: label\(s\) '2' do not occur in the train"):
        build_text(path=train, eval_path=dev, test_path=str(test))


def test_given_test_splits_eval_off_train(tmp_path: Path) -> None:
    path = str(write_table(tmp_path / "d.csv", [TextExample(e.text, e.label) for e in balanced(9)]))
    splits = build_text(path=path, test_path=path)
    assert (len(splits.train), len(splits.eval), len(splits.test)) == (24, 3, 27)
    assert splits.split["test"] == "given"


def test_split_errors(tmp_path: Path) -> None:
    path = str(write_table(tmp_path / "d.csv", ROWS))
    with pytest.raises(
        TensorfabError, match=r"d.csv: cannot make a stratified split of 3 examples"
    ):
        build_text(path=path)
    with pytest.raises(TensorfabError, match=r"split fractions must be three positive numbers"):
        build_text(path=path, split_fractions=(0.8, 0.3, 0.1))


def test_sources() -> None:
    sst = text_source("/x/sst2/train.tsv")
    assert (
        sst["name"] == "SST-2 (GLUE)"
        and sst["licence"] == "no licence stated; cite Socher et al. 2013"
    )
    bank = text_source("/x/Sentences_AllAgree.txt")
    assert bank["name"] == "Financial PhraseBank v1.0 (Sentences_AllAgree)"
    assert "Malo" in bank["citation"]
    assert text_source("/x/reviews.csv") == {
        "name": "reviews",
        "path": "/x/reviews.csv",
        "licence": "unknown (user data)",
        "citation": "",
    }


@pytest.mark.parametrize(
    ("name", "fallback", "expected"),
    [
        ("t.csv", "phrasebank", "csv"),  # the file's own suffix wins over the model's format
        ("t.TSV", "phrasebank", "tsv"),
        ("t.jsonl", "csv", "jsonl"),
        ("Sentences_AllAgree.txt", "csv", "phrasebank"),
        ("mine.txt", "phrasebank", "phrasebank"),  # a suffix that says nothing: the model's
    ],
)
def test_a_users_file_is_read_by_its_own_format(name: str, fallback: str, expected: str) -> None:
    assert file_text_format(name, fallback) == expected


def test_a_users_file_with_no_telling_suffix_and_no_format_is_refused() -> None:
    with pytest.raises(TensorfabError, match=r"mine.txt: cannot tell the format from the suffix"):
        file_text_format("mine.txt", "auto")
