"""Registry entries for the language formats: ``conll`` (NER) and ``text`` (classification).

The readers live in conll.py and text.py; this module names them for job specs
(``data.format``) and for ``evaluate --data`` (a user's own CoNLL or text file).
"""

from __future__ import annotations

from pathlib import Path

from tensorfab.data.conll import build_conll, read_conll
from tensorfab.data.registry import DATASETS
from tensorfab.data.text import build_text, read_text_examples
from tensorfab.data.text_types import TextExample, TextSplits, TokenExample


def load_conll_eval(path: str | Path) -> tuple[list[TokenExample], None]:
    return read_conll(path), None


def load_text_eval(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    text_format: str = "auto",
) -> tuple[list[TextExample], None]:
    return read_text_examples(path, text_format, text_column, label_column), None


@DATASETS.register("conll", eval_loader=load_conll_eval, task="token-classification")
def build_conll_dataset(
    *,
    path: str,
    eval_path: str | None = None,
    test_path: str | None = None,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    return build_conll(
        path=path,
        eval_path=eval_path,
        test_path=test_path,
        split_seed=split_seed,
        limit_train=limit_train,
        limit_eval=limit_eval,
        limit_test=limit_test,
    )


@DATASETS.register("text", eval_loader=load_text_eval, task="text-classification")
def build_text_dataset(
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
    return build_text(
        path=path,
        eval_path=eval_path,
        test_path=test_path,
        text_column=text_column,
        label_column=label_column,
        format=text_format,
        dedupe=dedupe,
        split_fractions=tuple(split_fractions),
        split_seed=split_seed,
        limit_train=limit_train,
        limit_eval=limit_eval,
        limit_test=limit_test,
    )
