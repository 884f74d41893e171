"""Text classification data: tables (CSV, TSV, JSONL) and the Financial PhraseBank file.

Each example is a text with a label, both kept as strings (SST-2's 0/1 become "0"/"1").
Without given eval/test files the examples are split by a fixed, seeded, stratified
80/10/10 split, so every label lands in every part.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import split_rows
from tensorfab.data.text_types import TextExample, TextSplits, limit_text_splits, read_text_file
from tensorfab.errors import TensorfabError

FORMATS = ("auto", "csv", "tsv", "jsonl", "phrasebank")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
PHRASEBANK_LABELS = ("negative", "neutral", "positive")
PHRASEBANK_SOURCE = {
    "licence": "CC BY-NC-SA 3.0 (non-commercial)",
    "citation": (
        "P. Malo, A. Sinha, P. Takala, P. Korhonen, J. Wallenius, 'Good debt or bad debt: "
        "Detecting semantic orientations in economic texts', Journal of the Association for "
        "Information Science and Technology 65(4):782-796, 2014, arXiv:1307.5336"
    ),
}
SST2_SOURCE = {
    "name": "SST-2 (GLUE)",
    "licence": "no licence stated; cite Socher et al. 2013",
    "citation": (
        "R. Socher, A. Perelygin, J. Wu, J. Chuang, C. D. Manning, A. Ng, C. Potts, 'Recursive "
        "Deep Models for Semantic Compositionality Over a Sentiment Treebank', EMNLP 2013; "
        "A. Wang et al., 'GLUE: A Multi-Task Benchmark and Analysis Platform for Natural "
        "Language Understanding', 2018"
    ),
}
USER_LICENCE = "unknown (user data)"


def text_format(path: str | Path, format: str = "auto") -> str:
    """The format of a text file: ``format`` itself, or for "auto" the one its name implies.

    Suffixes: .csv, .tsv, .jsonl/.json; a .txt file named like the PhraseBank's
    ``Sentences_*Agree.txt`` (or under a phrasebank folder) is "phrasebank".
    """
    if format not in FORMATS:
        raise TensorfabError(f"unknown text format {format!r}; use one of: {', '.join(FORMATS)}")
    if format != "auto":
        return format
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[suffix]
    if suffix == ".txt" and (path.name.startswith("Sentences_") or "phrasebank" in str(path)):
        return "phrasebank"
    raise TensorfabError(
        f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; expected "
        f".csv, .tsv, .jsonl or .json, or set data.format ({', '.join(FORMATS[1:])})"
    )


def file_text_format(path: str | Path, fallback: str = "auto") -> str:
    """The format a user's own file (``evaluate --data``) is read by: the one its name implies,
    else ``fallback`` (the format the model was trained on).

    A model trained on the PhraseBank must still score a CSV, TSV or JSONL file, so the
    training spec's ``text_format`` cannot decide alone; it only settles names that tell
    nothing, such as a PhraseBank-style ``my-sentences.txt``.
    """
    try:
        return text_format(path, "auto")
    except TensorfabError:
        if fallback == "auto":
            raise
        return text_format(path, fallback)


def read_text_table(
    path: str | Path, text_column: str = "text", label_column: str = "label", format: str = "auto"
) -> list[TextExample]:
    """A CSV/TSV file with a header row, or a JSONL file, as texts with labels.

    Columns are picked by name. TSV is read without quote handling (SST-2's sentences
    contain bare double quotes); CSV follows the usual quoting rules.
    """
    path = Path(path)
    fmt = text_format(path, format)
    if fmt == "phrasebank":
        raise TensorfabError(
            f"{path}: a PhraseBank file is not a table; read it with format 'phrasebank'"
        )
    text = read_text_file(path, "utf-8-sig")  # -sig: a spreadsheet's BOM is not a column name
    if fmt == "jsonl":
        examples = _read_jsonl(path, text, text_column, label_column)
    else:
        examples = _read_delimited(path, text, fmt, text_column, label_column)
    if not examples:
        raise TensorfabError(f"{path}: no examples found (only a header or blank lines)")
    return examples


def _read_delimited(
    path: Path, text: str, fmt: str, text_column: str, label_column: str
) -> list[TextExample]:
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        text_at, label_at = _column_indices(path, header, text_column, label_column)
        return [
            _example(path, reader.line_num, _cell(row, text_at), _cell(row, label_at))
            for row in reader
            if row  # a blank line
        ]
    except csv.Error as exc:
        raise TensorfabError(f"{path}:{reader.line_num}: malformed {fmt.upper()} ({exc})") from None


def _cell(row: list[str], index: int) -> str | None:
    return row[index] if index < len(row) else None


def _column_indices(
    path: Path, header: list[str], text_column: str, label_column: str
) -> tuple[int, int]:
    missing = [name for name in (text_column, label_column) if name not in header]
    if not header:
        raise TensorfabError(f"{path}: empty file; expected a header row naming the columns")
    if missing:
        found = ", ".join(repr(name) for name in header)
        raise TensorfabError(
            f"{path}: no column {' or '.join(map(repr, missing))}; columns found: {found} "
            "(set data.text_column / data.label_column)"
        )
    return header.index(text_column), header.index(label_column)


def _example(path: Path, number: int, text: Any, label: Any) -> TextExample:
    """One example from a row's text and label cells; a missing or empty one is an error."""
    if label is None or label == "":
        raise TensorfabError(f"{path}:{number}: {'missing' if label is None else 'empty'} label")
    if not isinstance(text, str):
        found = "missing" if text is None else f"not a string ({type(text).__name__})"
        raise TensorfabError(f"{path}:{number}: text {found}")
    if not text.strip():
        raise TensorfabError(f"{path}:{number}: empty text")
    return TextExample(text, str(label))


def _read_jsonl(path: Path, text: str, text_column: str, label_column: str) -> list[TextExample]:
    examples = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TensorfabError(
                f"{path}:{number}: invalid JSON ({exc.msg}); expected one object per line"
            ) from None
        if not isinstance(row, dict):
            raise TensorfabError(
                f"{path}:{number}: expected a JSON object, found {type(row).__name__}"
            )
        missing = [name for name in (text_column, label_column) if name not in row]
        if missing:
            found = ", ".join(repr(name) for name in row)
            raise TensorfabError(
                f"{path}:{number}: no field {' or '.join(map(repr, missing))}; fields found: "
                f"{found or '(none)'} (set data.text_column / data.label_column)"
            )
        examples.append(_example(path, number, row[text_column], row[label_column]))
    return examples


def read_phrasebank(path: str | Path) -> list[TextExample]:
    """A Financial PhraseBank file: ``sentence@label`` lines, latin-1, CRLF.

    Split on the last '@' (sentences may contain one); the label must be positive,
    neutral or negative.
    """
    path = Path(path)
    examples = []
    for number, line in enumerate(read_text_file(path, "latin-1").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        sentence, at, label = line.rpartition("@")
        if not at or not sentence.strip():
            raise TensorfabError(f"{path}:{number}: expected 'sentence@label', found {line!r}")
        if label.strip() not in PHRASEBANK_LABELS:
            raise TensorfabError(
                f"{path}:{number}: label {label!r} is not one of {', '.join(PHRASEBANK_LABELS)}"
            )
        examples.append(TextExample(sentence, label.strip()))
    if not examples:
        raise TensorfabError(f"{path}: no examples found; expected 'sentence@label' lines")
    return examples


def read_text_examples(
    path: str | Path, format: str = "auto", text_column: str = "text", label_column: str = "label"
) -> list[TextExample]:
    """Any supported text classification file, by ``format`` (or its name when "auto")."""
    if text_format(path, format) == "phrasebank":
        return read_phrasebank(path)
    return read_text_table(path, text_column, label_column, format)


def text_source(path: str | Path, format: str = "auto") -> dict[str, str]:
    """Name, path, licence and citation of a text data set, recognised by format or path."""
    lowered = str(path).lower()
    if text_format(path, format) == "phrasebank":
        name = f"Financial PhraseBank v1.0 ({Path(path).stem})"
        return {"name": name, "path": str(path), **PHRASEBANK_SOURCE}
    if "sst2" in lowered or "sst-2" in lowered:
        return {**SST2_SOURCE, "path": str(path)}
    return {"name": Path(path).stem, "path": str(path), "licence": USER_LICENCE, "citation": ""}


def stratified_three_way(
    labels: list[str], fractions: tuple[float, float, float], seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Row indices (train, eval, test) by a seeded stratified split with sizes ``fractions``.

    Two "sklearn" splits: test first, then eval from the rest; the eval and test sizes are
    rounded from the whole count. Each part comes shuffled.
    """
    n = len(labels)
    n_test, n_eval = round(n * fractions[2]), round(n * fractions[1])
    rest, test = split_rows(labels, n_test, seed, algorithm="sklearn")
    train, eval_rows = split_rows([labels[i] for i in rest], n_eval, seed, algorithm="sklearn")
    return [rest[i] for i in train], [rest[i] for i in eval_rows], test


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) <= 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise TensorfabError(
            f"split fractions must be three positive numbers (train, eval, test) summing to 1, "
            f"got {list(fractions)}"
        )
    return values[0], values[1], values[2]


def _split(
    path: str,
    examples: list[TextExample],
    fractions: tuple[float, float, float],
    seed: int,
    *,
    three: bool,
) -> list[list[TextExample]]:
    """The stratified parts [train, eval(, test)] of ``examples``; a too-small class is an error."""
    labels = [e.label for e in examples]
    try:
        if three:
            parts = stratified_three_way(labels, fractions, seed)
        else:
            n_eval = round(len(examples) * fractions[1] / (fractions[0] + fractions[1]))
            parts = split_rows(labels, n_eval, seed, algorithm="sklearn")
    except ValueError as exc:
        raise TensorfabError(
            f"{path}: cannot make a stratified split of {len(examples)} examples: {exc}"
        ) from None
    return [[examples[i] for i in rows] for rows in parts]


def _check_labels(path: str, examples: list[TextExample], labels: list[str]) -> None:
    unseen = sorted({e.label for e in examples} - set(labels))
    if unseen:
        raise TensorfabError(
            f"{path}: label(s) {', '.join(map(repr, unseen))} do not occur in the training "
            f"data; the label map is built from train: {', '.join(labels)}"
        )


def load_text_eval(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    text_format: str = "auto",
) -> tuple[list[TextExample], None]:
    """A user's own labelled text file, for ``evaluate --data``."""
    return read_text_examples(path, text_format, text_column, label_column), None


@DATASETS.register("text", eval_loader=load_text_eval, task="text-classification")
def build_text(
    *,
    path: str,
    eval_path: str | None = None,
    test_path: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    text_format: str = "auto",
    dedupe: bool = False,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    """Train/eval/test texts with labels from one file, or from given eval/test files.

    Without ``eval_path`` the train file is split by a seeded stratified split with
    ``split_fractions`` (train, eval, test); with ``test_path`` but no ``eval_path``, only
    train/eval are split off the train file (in the ratio of their fractions). With
    ``eval_path`` but no ``test_path``, test is eval. ``dedupe`` drops exact duplicate
    (text, label) examples within each file first (PhraseBank repeats a few lines).
    The label map is the sorted labels of train; an eval/test label train lacks is an error.
    """
    fractions = _check_fractions(split_fractions)

    removed: dict[str, int] = {}  # file -> duplicates dropped

    def read(file: str) -> list[TextExample]:
        examples = read_text_examples(file, text_format, text_column, label_column)
        if not dedupe:
            return examples
        unique = list(dict.fromkeys(examples))  # keeps the first of each, in file order
        removed[file] = len(examples) - len(unique)
        return unique

    examples = read(path)
    split: dict[str, Any] = {"method": "given" if eval_path else "stratified", "dedupe": dedupe}
    if eval_path is not None:
        train, eval_part = examples, read(eval_path)
        test = read(test_path) if test_path else eval_part
    else:
        parts = _split(path, examples, fractions, split_seed, three=test_path is None)
        train, eval_part = parts[0], parts[1]
        test = read(test_path) if test_path else parts[2]
        split.update(fractions=list(fractions), seed=split_seed)
    split["test"] = "given" if test_path else ("eval" if eval_path else "stratified")
    if dedupe:
        split["duplicates_removed"] = sum(removed.values())
    labels = sorted({e.label for e in train})
    _check_labels(eval_path or path, eval_part, labels)
    _check_labels(test_path or eval_path or path, test, labels)
    splits = TextSplits(train, eval_part, test, labels, text_source(path, text_format), split)
    return limit_text_splits(splits, limit_train, limit_eval, limit_test)
