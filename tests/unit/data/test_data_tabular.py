"""The CSV table format: Adult's quirks, column kinds, and errors that name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorfab.data import create_dataset
from tensorfab.data.tabular import column_kinds, read_table
from tensorfab.errors import TensorfabError

ADULT_LIKE = """age, workclass, hours, sex, Y
39, State-gov, 40, Male, <=50K
50, ?, 13, Female, >50K.

28, Private, 40, Female, >50K
"""


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_adult_quirks(tmp_path: Path) -> None:
    table = read_table(_write(tmp_path, ADULT_LIKE))
    assert table.columns == ["age", "workclass", "hours", "sex"]
    assert table.rows[1] == ["50", None, "13", "Female"]  # "?" is missing, ", " is one separator
    assert table.labels == ["<=50K", ">50K", ">50K"]  # the test file's trailing dot is gone
    assert column_kinds(table) == {
        "age": "numeric",
        "workclass": "categorical",
        "hours": "numeric",
        "sex": "categorical",
    }


def test_named_label_column(tmp_path: Path) -> None:
    table = read_table(_write(tmp_path, "y, a\n1, x\n0, y\n"), label_column="y")
    assert table.columns == ["a"] and table.labels == ["1", "0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a, Y\n1, 2, 3\n", "t.csv:2: 3 fields, the header has 2"),
        ("a, Y\n1, x\n2, ?\n", "t.csv:3: the label is missing"),
        ("a, Y\n", "no data rows after the header"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TensorfabError, match=message):
        read_table(_write(tmp_path, text))


def test_registered_format_checks_test_columns(tmp_path: Path) -> None:
    train = _write(tmp_path, "a, b, Y\n1, x, 0\n", "train.csv")
    test = _write(tmp_path, "a, c, Y\n1, x, 0\n", "test.csv")
    with pytest.raises(TensorfabError, match=r"test.csv:1: columns differ .*missing: \['b'\]"):
        create_dataset("csv-table", path=str(train), test_path=str(test))
    splits = create_dataset("csv-table", path=str(train), test_path=str(train))
    assert splits.test is not None and splits.test.labels == ["0"]
