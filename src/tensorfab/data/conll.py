"""CoNLL column files (CoNLL-2003 NER): sentences of words with one IOB2 tag each.

A file holds one token per line, ``token POS chunk NER`` (the NER tag is the last column,
so two-column ``token TAG`` files read too), a blank line after each sentence, and
``-DOCSTART-`` lines between documents (each sentence records its document's number: the
sentences before the first ``-DOCSTART-``, or of a file without one, are document 0). Tags
may come in IOB1 (the 2003 distribution) or IOB2 (what most copies, HuggingFace's
included, ship); they are read into IOB2, the one scheme the rest of tensorfab sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import split_rows
from tensorfab.data.text_types import TextSplits, TokenExample, limit_text_splits, read_text_file
from tensorfab.errors import TensorfabError

DOCSTART = "-DOCSTART-"
SCHEMES = ("auto", "iob1", "iob2")
_TAG = re.compile(r"O|[BI]-\S+")
CONLL2003_SOURCE = {
    "name": "CoNLL-2003 English",
    "licence": "Reuters RCV1 text: research use only (Reuters Corpus agreement)",
    "citation": (
        "Erik F. Tjong Kim Sang and Fien De Meulder, 'Introduction to the CoNLL-2003 Shared "
        "Task: Language-Independent Named Entity Recognition', Proceedings of CoNLL-2003 at "
        "HLT-NAACL 2003, pp. 142-147, https://www.aclweb.org/anthology/W03-0419"
    ),
}
_CONLL2003_NAMES = ("conll2003", "conll-2003", "conll_2003", "eng.train", "eng.testa", "eng.testb")
USER_LICENCE = "unknown (user data)"


def read_conll(path: str | Path, scheme: str = "auto") -> list[TokenExample]:
    """The sentences of a CoNLL column file, tags in IOB2.

    ``scheme`` says how the file is tagged: "iob1" converts, "iob2" keeps the tags as
    they are, "auto" converts only when some entity starts with ``I-`` (IOB1), so an
    IOB2 file comes back unchanged.
    """
    return _read_with_scheme(path, scheme)[0]


def _read_with_scheme(path: str | Path, scheme: str) -> tuple[list[TokenExample], str]:
    """The sentences in IOB2 and the scheme the file was read as ("iob1" or "iob2")."""
    if scheme not in SCHEMES:
        raise TensorfabError(f"unknown tag scheme {scheme!r}; use one of: {', '.join(SCHEMES)}")
    sentences = _parse_conll(Path(path))
    if scheme == "auto":
        scheme = detect_scheme(s.tags for s in sentences)
    if scheme == "iob1":
        sentences = [TokenExample(s.words, to_iob2(s.tags), s.doc) for s in sentences]
    return sentences, scheme


def _parse_conll(path: Path) -> list[TokenExample]:
    """The sentences as written (tags checked for form, not converted)."""
    sentences: list[TokenExample] = []
    words: list[str] = []
    tags: list[str] = []
    doc = 0  # a document starts at -DOCSTART-; its number increases only after a sentence
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        columns = line.split()
        if columns and columns[0] != DOCSTART:
            words.append(columns[0])
            tags.append(_check_tag(path, number, line, columns))
            continue
        if words:  # a blank line (or a document start) ends the sentence
            sentences.append(TokenExample(words, tags, doc))
            words, tags = [], []
        if columns and sentences and sentences[-1].doc == doc:
            doc += 1
    if words:  # the last sentence needs no blank line after it
        sentences.append(TokenExample(words, tags, doc))
    if not sentences:
        raise TensorfabError(
            f"{path}: no sentences found; expected lines 'token POS chunk NER' (or 'token TAG') "
            "with a blank line after each sentence"
        )
    return sentences


def _check_tag(path: Path, number: int, line: str, columns: list[str]) -> str:
    """The NER tag (last column) of one token line."""
    if len(columns) < 2:
        raise TensorfabError(
            f"{path}:{number}: expected 'token POS chunk NER' (at least 2 columns), "
            f"found {len(columns)}: {line.strip()!r}"
        )
    tag = columns[-1]
    if not _TAG.fullmatch(tag):
        raise TensorfabError(f"{path}:{number}: tag {tag!r} is not O, B-<type> or I-<type>")
    return tag


def _starts_entity_with_i(previous: str, tag: str) -> bool:
    """True for an ``I-X`` that does not continue a ``B-X``/``I-X`` (an IOB1 entity start)."""
    return tag.startswith("I-") and previous[2:] != tag[2:]


def detect_scheme(tag_sequences: Iterable[list[str]]) -> str:
    """ "iob1" when some entity starts with ``I-``, else "iob2" (every entity starts with B-)."""
    for tags in tag_sequences:
        previous = "O"
        for tag in tags:
            if _starts_entity_with_i(previous, tag):
                return "iob1"
            previous = tag
    return "iob2"


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1 tags in IOB2: an ``I-X`` that starts an entity becomes ``B-X``.

    In IOB1, ``B-X`` appears only between two adjacent entities of type X, where it
    already starts the second one, so it stays. Tags already in IOB2 come back unchanged.
    """
    out: list[str] = []
    previous = "O"
    for tag in tags:
        out.append("B-" + tag[2:] if _starts_entity_with_i(previous, tag) else tag)
        previous = tag
    return out


def tag_labels(examples: Iterable[TokenExample]) -> list[str]:
    """The tag label map: "O", then ``B-X``, ``I-X`` for each entity type X, sorted.

    Both tags of a type are listed even when one never occurs (a type seen only as
    single-word entities still gets its ``I-``), so a model can predict either.
    """
    types = sorted({tag[2:] for example in examples for tag in example.tags if tag != "O"})
    return ["O", *(f"{prefix}-{t}" for t in types for prefix in ("B", "I"))]


def conll_source(path: str | Path) -> dict[str, str]:
    """Name, path, licence and citation: CoNLL-2003's when the path looks like it."""
    lowered = str(path).lower()
    if any(name in lowered for name in _CONLL2003_NAMES):
        return {**CONLL2003_SOURCE, "path": str(path)}
    return {"name": Path(path).stem, "path": str(path), "licence": USER_LICENCE, "citation": ""}


def load_conll_eval(path: str | Path) -> tuple[list[TokenExample], None]:
    """A user's own CoNLL file, for ``evaluate --data``."""
    return read_conll(path), None


@DATASETS.register("conll", eval_loader=load_conll_eval, task="token-classification")
def build_conll(
    *,
    path: str,
    eval_path: str | None = None,
    test_path: str | None = None,
    scheme: str = "auto",
    eval_fraction: float = 0.1,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    """Train/eval/test sentences from CoNLL files, tags in IOB2.

    ``path`` is the train file. The eval part is ``eval_path`` (CoNLL-2003's valid file);
    without one, a seeded random ``eval_fraction`` (10%) of the train sentences is held out
    (``split_seed``). The test part is ``test_path``, else the eval part. The label map
    comes from the train part only; a tag type in eval or test that train lacks is an error.
    """
    schemes: dict[str, str] = {}  # the scheme each file was read as
    train, schemes["train"] = _read_with_scheme(path, scheme)
    split: dict[str, Any] = {"method": "given" if eval_path else "random"}
    if eval_path is not None:
        eval_part, schemes["eval"] = _read_with_scheme(eval_path, scheme)
    else:
        if len(train) < 2:
            raise TensorfabError(
                f"{path}: {len(train)} sentence, too few to hold out an eval split; give eval_path"
            )
        rows = [0] * len(train)  # sentences have no single label: one class, unstratified
        keep, held = split_rows(
            rows, eval_fraction, split_seed, algorithm="unstratified", what="eval"
        )
        train, eval_part = [train[i] for i in keep], [train[i] for i in held]
        split.update(eval_fraction=eval_fraction, seed=split_seed)
    test = eval_part
    if test_path is not None:
        test, schemes["test"] = _read_with_scheme(test_path, scheme)
    labels = tag_labels(train)
    for part_path, part in ((eval_path, eval_part), (test_path, test)):
        _check_known_tags(part_path or path, part, labels, path)
    split.update(test="given" if test_path else "eval", scheme=schemes)
    splits = TextSplits(train, eval_part, test, labels, conll_source(path), split)
    return limit_text_splits(splits, limit_train, limit_eval, limit_test)


def _check_known_tags(
    path: str, examples: list[TokenExample], labels: list[str], train_path: str
) -> None:
    known = set(labels)
    unseen = sorted({tag for example in examples for tag in example.tags} - known)
    if unseen:
        raise TensorfabError(
            f"{path}: tag(s) {', '.join(unseen)} do not occur in the training data "
            f"({train_path}); the label map is built from train: {', '.join(labels)}"
        )
