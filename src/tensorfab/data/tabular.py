"""Tabular data: a CSV file with a header, numeric and categorical columns, label last.

Reads the quirks of the field's standard benchmark (Adult, UCI): fields separated by
``, `` (a comma and a space), ``?`` for a missing value, and test labels ending in a dot
(``>50K.``), so train and test labels name the same classes. Cells stay strings here; which
columns are numeric is decided on the training split (:func:`column_kinds`), and encoding
and standardisation belong to the task.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorfab.data.registry import DATASETS
from tensorfab.errors import TensorfabError

MISSING = "?"
USER_LICENCE = "unknown (user data)"


@dataclass
class Table:
    """Rows of a CSV file: feature cells (None: missing) and, where present, the labels."""

    columns: list[str]  # feature column names, in file order (label column excluded)
    rows: list[list[str | None]]
    labels: list[str] | None
    source: str = ""  # the file it came from, for messages


@dataclass
class TableSplits:
    """The train and test tables of a data set, and what the model package records of it."""

    train: Table
    test: Table | None
    source: dict[str, str] = field(default_factory=dict)  # name, path, licence, citation
    split: dict[str, Any] = field(default_factory=dict)


ADULT_SOURCE = {
    "name": "Adult (UCI Census Income, 1994)",
    "licence": "CC BY 4.0",
    "citation": "Becker and Kohavi (1996), UCI Machine Learning Repository, doi:10.24432/C5XW20",
}


def table_source(path: str | Path) -> dict[str, str]:
    """Name, path, licence and citation of a table, recognised by its path (Adult)."""
    if "adult" in str(path).lower():
        return {**ADULT_SOURCE, "path": str(path)}
    return {"name": Path(path).stem, "path": str(path), "licence": USER_LICENCE, "citation": ""}


def _cell(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", MISSING) else text


def _label(text: str) -> str:
    # Adult's test file writes ">50K." where the training file writes ">50K".
    return text.strip().rstrip(".")


def read_table(path: str | Path, label_column: str | None = None) -> Table:
    """Read a CSV table; ``label_column`` (default: the last column) holds the labels.

    A row with the wrong number of fields, or a missing label, is a TensorfabError naming
    ``file:line``. Blank lines are skipped.
    """
    path = Path(path)
    lines = read_lines(path)
    header = [name.strip() for name in lines[0]]
    label_at = _label_index(header, label_column, path)
    table = Table([h for i, h in enumerate(header) if i != label_at], [], [], str(path))
    for number, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        _add_row(table, fields, len(header), label_at, f"{path}:{number}")
    if not table.rows:
        raise TensorfabError(f"{path}: no data rows after the header")
    return table


def read_lines(path: Path) -> list[list[str]]:
    """The CSV fields of every line, the header first (``, `` is one separator)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f, skipinitialspace=True))
    except OSError as exc:
        raise TensorfabError(f"cannot read table {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TensorfabError(f"{path}: not a UTF-8 CSV table ({exc})") from None
    if not lines:
        raise TensorfabError(f"{path}:1: empty file; a table needs a header line")
    return lines


def read_records(path: str | Path) -> list[tuple[int, dict[str, str | None]]]:
    """Rows as {column: cell} with their line numbers, for people's inputs (no label needed)."""
    path = Path(path)
    lines = read_lines(path)
    header = [name.strip() for name in lines[0]]
    records = []
    for number, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise TensorfabError(
                f"{path}:{number}: {len(fields)} fields, the header has {len(header)}"
            )
        records.append((number, {h: _cell(v) for h, v in zip(header, fields, strict=True)}))
    return records


def _label_index(header: list[str], label_column: str | None, path: Path) -> int:
    if label_column is None:
        return len(header) - 1
    if label_column not in header:
        raise TensorfabError(
            f"{path}:1: no label column {label_column!r} in the header ({', '.join(header)})"
        )
    return header.index(label_column)


def _add_row(table: Table, fields: list[str], width: int, label_at: int, where: str) -> None:
    if len(fields) != width:
        raise TensorfabError(f"{where}: {len(fields)} fields, the header has {width}")
    label = _cell(fields[label_at])
    if label is None:
        raise TensorfabError(f"{where}: the label is missing")
    table.rows.append([_cell(v) for i, v in enumerate(fields) if i != label_at])
    assert table.labels is not None
    table.labels.append(_label(label))


def column_kinds(table: Table) -> dict[str, str]:
    """``numeric`` for a column whose every present cell is a number, else ``categorical``."""
    kinds = {}
    for j, name in enumerate(table.columns):
        present = [row[j] for row in table.rows if row[j] is not None]
        kinds[name] = (
            "numeric" if present and all(_is_number(v) for v in present) else "categorical"
        )
    return kinds


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_columns(table: Table, expected: list[str]) -> None:
    """Refuse a table whose feature columns differ from the ones a model was trained on."""
    if table.columns != expected:
        missing = [c for c in expected if c not in table.columns]
        extra = [c for c in table.columns if c not in expected]
        raise TensorfabError(
            f"{table.source}:1: columns differ from the model's (missing: {missing or 'none'}, "
            f"unexpected: {extra or 'none'})"
        )


def load_table_eval(path: str) -> tuple[Table, list[str] | None]:
    """A user's own labelled table for ``evaluate --data``; its classes come from the model."""
    return read_table(path), None


@DATASETS.register("csv-table", eval_loader=load_table_eval, task="tabular-classification")
def build_csv_table(path: str, test_path: str | None = None) -> TableSplits:
    """Train (``path``) and optional test (``test_path``) tables with the same columns."""
    train = read_table(path)
    test = read_table(test_path) if test_path else None
    if test is not None:
        check_columns(test, train.columns)
    split = {"method": "files", "train": str(path), "test": test_path or "validation part"}
    return TableSplits(train, test, table_source(path), split)
