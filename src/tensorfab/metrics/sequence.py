"""Sequence-labelling scores (named-entity recognition): entity level (CoNLL) and token level.

Entity level is the standard CoNLL definition: an entity counts as found only if its type and both
boundaries match exactly; the chunking is seqeval's default (conlleval-compatible) mode, which, like
conlleval, lets an ``I-`` tag that follows ``O`` or another type begin an entity. Token level is
per-tag classification over the flattened tags (``classification_scores``); both render as markdown
with ``sequence_report_markdown``. seqeval is imported only when entity scores are computed (it
imports sklearn, which is slow to load).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tensorfab.metrics.classification import classification_scores
from tensorfab.metrics.report import sequence_report_markdown  # rendering lives with the reports

__all__ = ["entity_errors", "entity_scores", "sequence_report_markdown", "token_scores"]

# The prefixes seqeval's default mode (and conlleval) understand: IOB1/IOB2 and IOBES.
_PREFIXES = ("B-", "I-", "E-", "S-")


def _sentences(tags: Sequence[Sequence[str]], name: str) -> list[list[str]]:
    """Plain lists of str; a flat list of tags (one sentence not wrapped in a list) is an error."""
    sentences = []
    for i, sentence in enumerate(tags):
        if isinstance(sentence, str):
            raise ValueError(
                f"{name}[{i}] is the string {sentence!r}: expected one list of tags per sentence"
            )
        sentences.append([str(tag) for tag in sentence])
    return sentences


def _paired(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Both sides as lists of lists, checked to hold the same number of tags in every sentence."""
    y_true, y_pred = _sentences(true_tags, "true_tags"), _sentences(pred_tags, "pred_tags")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"true_tags has {len(y_true)} sentences, pred_tags has {len(y_pred)}: "
            "need one prediction per sentence"
        )
    for i, (true_sentence, pred_sentence) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(true_sentence) != len(pred_sentence):
            raise ValueError(
                f"sentence {i}: true_tags has {len(true_sentence)} tags, "
                f"pred_tags has {len(pred_sentence)}"
            )
    return y_true, y_pred


def _check_entity_tags(sentences: list[list[str]], name: str) -> None:
    """Every tag is ``O`` or ``<B|I|E|S>-TYPE``: seqeval would only warn and mis-read the type."""
    for i, sentence in enumerate(sentences):
        for j, tag in enumerate(sentence):
            if tag != "O" and not (tag.startswith(_PREFIXES) and len(tag) > 2):
                raise ValueError(
                    f"{name}[{i}][{j}] = {tag!r} is not an entity tag: "
                    "expected 'O' or B-/I-/E-/S- followed by a type, e.g. 'B-PER'"
                )


def _type_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def entity_scores(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Entity-level precision/recall/F1: per type, micro (the headline CoNLL F1), macro, weighted.

    Types are those found in either side. A predicted entity with the right type but a wrong
    boundary counts twice: as a false positive and as a false negative. With no entity on either
    side every score is 0.0. Plain floats and ints, ready for JSON.
    """
    from seqeval.metrics import classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    y_true, y_pred = _paired(true_tags, pred_tags)
    _check_entity_tags(y_true, "true_tags")
    _check_entity_tags(y_pred, "pred_tags")
    # get_entities puts an "O" between sentences, so no entity spans two of them
    n_true, n_pred = len(get_entities(y_true)), len(get_entities(y_pred))
    counts = {"n_sentences": len(y_true), "n_entities_true": n_true, "n_entities_pred": n_pred}
    if n_true == 0 and n_pred == 0:
        # seqeval's macro average over no types is a NaN (with a warning): report zeros instead
        zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0}
        return {**zeros, "per_type": {}, **counts}
    # mode=None: the default, conlleval-compatible chunking, not the strict IOB2 scheme
    report = classification_report(y_true, y_pred, output_dict=True, mode=None, zero_division=0)
    micro = _type_row(report.pop("micro avg"))
    macro, weighted = report.pop("macro avg"), report.pop("weighted avg")
    return {
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1"],
        "macro_f1": float(macro["f1-score"]),
        "weighted_f1": float(weighted["f1-score"]),
        "per_type": {name: _type_row(row) for name, row in sorted(report.items())},
        **counts,
    }


def _tag_ids(
    sentences: list[list[str]], index: dict[str, int], name: str, tag_names: list[str]
) -> list[int]:
    ids = []
    for i, sentence in enumerate(sentences):
        for j, tag in enumerate(sentence):
            if tag not in index:
                raise ValueError(f"{name}[{i}][{j}] = {tag!r} is not one of tag_names {tag_names}")
            ids.append(index[tag])
    return ids


def token_scores(
    true_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    tag_names: Sequence[str],
) -> dict[str, Any]:
    """Token-level scores per tag (the flattened report the tutorials print).

    The ``classification_scores`` dict with ``tag_names`` as the classes: every tag is reported,
    also those absent from the data; ``O`` counts as a tag like any other.
    """
    names = [str(tag) for tag in tag_names]
    if len(set(names)) != len(names):
        duplicates = sorted({tag for tag in names if names.count(tag) > 1})
        raise ValueError(f"tag_names lists {duplicates} more than once")
    y_true, y_pred = _paired(true_tags, pred_tags)
    index = {tag: i for i, tag in enumerate(names)}
    targets = _tag_ids(y_true, index, "true_tags", names)
    preds = _tag_ids(y_pred, index, "pred_tags", names)
    return classification_scores(targets, preds, names)


Span = tuple[str, int, int]  # entity type, first and last word (inclusive)
_ERROR_KINDS = ("correct", "boundary", "wrong_type", "missed", "spurious")
TOP_CONFUSIONS = 10


def _spans(tags: list[str]) -> list[Span]:
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end) for kind, start, end in get_entities(tags)]


def _overlap(a: Span, b: Span) -> bool:
    return a[1] <= b[2] and b[1] <= a[2]


def _classify_pred(pred: Span, true: list[Span]) -> tuple[str, str]:
    """What a predicted entity is: (kind, the true type it is counted under)."""
    if pred in true:
        return "correct", pred[0]
    touched = [t for t in true if _overlap(t, pred)]
    if not touched:
        return "spurious", pred[0]
    same = [t for t in touched if t[0] == pred[0]]
    if same:
        return "boundary", pred[0]
    return "wrong_type", touched[0][0]


def entity_errors(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Where entity predictions go wrong, per entity type (for a person reading the report).

    Each predicted entity is ``correct`` (type and span exact), a ``boundary`` error (it
    overlaps a true entity of its type with another span), ``wrong_type`` (it overlaps only
    true entities of other types: counted under the first one's type, and as a confusion
    true -> predicted type) or ``spurious`` (it overlaps no true entity, counted under its own
    type). A true entity that no prediction overlaps is ``missed``. ``confusions``: the most
    frequent (true type, predicted type) pairs, with how many had exactly the true span.
    """
    y_true, y_pred = _paired(true_tags, pred_tags)
    per_type: dict[str, dict[str, int]] = {}
    confusions: dict[tuple[str, str], list[int]] = {}

    def count(kind: str, name: str) -> None:
        per_type.setdefault(name, dict.fromkeys(_ERROR_KINDS, 0))[kind] += 1

    for true_row, pred_row in zip(y_true, y_pred, strict=True):
        true, pred = _spans(true_row), _spans(pred_row)
        for p in pred:
            kind, name = _classify_pred(p, true)
            count(kind, name)
            if kind == "wrong_type":
                pair = confusions.setdefault((name, p[0]), [0, 0])
                pair[0] += 1
                pair[1] += any(t[1:] == p[1:] for t in true)
        for t in true:
            if not any(_overlap(t, p) for p in pred):
                count("missed", t[0])
    ranked = sorted(confusions.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP_CONFUSIONS]
    return {
        "per_type": dict(sorted(per_type.items())),
        "confusions": [
            {"true": t, "pred": p, "count": n, "same_span": same} for (t, p), (n, same) in ranked
        ],
    }
