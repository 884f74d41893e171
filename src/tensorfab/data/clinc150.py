"""CLINC150-style intent data: a JSON object of ``[text, intent]`` lists under named keys.

In-scope queries carry one of the intents, out-of-scope ones the intent ``oos``. The
splits a job gets: ``train`` = ``train`` + a seeded half of ``oos_train`` (``oos`` trained
as a class), ``eval`` = ``val`` + the other half of ``oos_train`` (where the out-of-scope
rule is chosen, on queries no model saw) and ``test`` = ``val`` + ``oos_val`` (where it
is reported).
A user's file for ``evaluate --data`` holds ``test`` and ``oos_test`` (as the full
``data_full.json`` does), or else any lists but the training ones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tensorfab.data.banking77 import keep_per_class
from tensorfab.data.registry import DATASETS
from tensorfab.data.text_types import TextExample, TextSplits, limit_text_splits, read_text_file
from tensorfab.errors import TensorfabError

OOS = "oos"  # the intent of an out-of-scope query
TRAIN_KEYS = ("train", "oos_train")
EVAL_KEYS = ("test", "oos_test")
CLINC150_SOURCE = {
    "licence": "CC BY 3.0",
    "citation": "Larson et al. 2019, An Evaluation Dataset for Intent Classification and "
    "Out-of-Scope Prediction (CLINC150)",
}


def read_clinc150(path: str | Path) -> dict[str, list[TextExample]]:
    """Every list of the file by its key; a malformed pair is an error naming key[index]."""
    path = Path(path)
    try:
        data = json.loads(read_text_file(path))
    except json.JSONDecodeError as exc:
        raise TensorfabError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise TensorfabError(f"{path}: expected a JSON object of [text, intent] lists")
    return {key: _pairs(path, key, value) for key, value in data.items()}


def _pairs(path: Path, key: str, value: Any) -> list[TextExample]:
    if not isinstance(value, list):
        raise TensorfabError(f"{path}: {key}: expected a list of [text, intent] pairs")
    examples = []
    for i, pair in enumerate(value):
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        if not ok or not pair[0].strip() or not pair[1]:
            raise TensorfabError(f"{path}: {key}[{i}]: expected [text, intent], found {pair!r}")
        examples.append(TextExample(pair[0], pair[1]))
    return examples


def _need(path: str, parts: dict[str, list[TextExample]], key: str) -> list[TextExample]:
    if key not in parts:
        found = ", ".join(parts) or "(none)"
        raise TensorfabError(f"{path}: no list {key!r}; keys found: {found}")
    return parts[key]


def load_clinc150_eval(path: str | Path, **_: Any) -> tuple[list[TextExample], None]:
    """``test`` + ``oos_test`` of a user's file, else every list but the training ones."""
    parts = read_clinc150(path)
    keys = [k for k in EVAL_KEYS if k in parts] or [k for k in parts if k not in TRAIN_KEYS]
    examples = [e for k in keys for e in parts[k]]
    if not examples:
        raise TensorfabError(f"{path}: no examples to evaluate (expected 'test'/'oos_test')")
    return examples, None


@DATASETS.register("clinc150", eval_loader=load_clinc150_eval, task="intent-classification")
def build_clinc150(
    *,
    path: str,
    split_seed: int = 0,
    per_class_limit: int | None = None,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    """train + half of oos_train, eval = val + the other half, test = val + oos_val."""
    parts = read_clinc150(path)
    learned, calibration = halve(_oos(path, parts, "oos_train"), split_seed)
    train = [e for e in _need(path, parts, "train") if e.label != OOS] + learned
    train = keep_per_class(train, per_class_limit)
    val = _need(path, parts, "val")
    labels = sorted({e.label for e in train} - {OOS})
    unseen = sorted({e.label for e in val} - set(labels) - {OOS})
    if unseen:
        raise TensorfabError(f"{path}: val intents {unseen} do not occur in train")
    report = _oos(path, parts, "oos_val")
    split = {
        "method": "given",
        "train": "train+oos_train/2",
        "eval": "val+oos_train/2",
        "test": "val+oos_val",
        "seed": split_seed,
    }
    if per_class_limit is not None:
        split["per_class_limit"] = per_class_limit
    source = {"name": "CLINC150", "path": str(path), **CLINC150_SOURCE}
    splits = TextSplits(train, val + calibration, val + report, labels, source, split)
    return limit_text_splits(splits, limit_train, limit_eval, limit_test)


def halve(examples: list[TextExample], seed: int) -> tuple[list, list]:
    """(trained, held): a seeded shuffle cut at ``len // 2``; held gets the odd one."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = len(order) // 2
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


def _oos(path: str, parts: dict[str, list[TextExample]], key: str) -> list[TextExample]:
    examples = _need(path, parts, key)
    wrong = sorted({e.label for e in examples} - {OOS})
    if wrong:
        raise TensorfabError(f"{path}: {key} holds intents {wrong}; expected only {OOS!r}")
    return examples
