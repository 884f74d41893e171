"""Word <-> sub-token alignment for token classification.

A word's label goes on its first sub-token; the special tokens get ``IGNORE`` (left out of
the loss, as cross-entropy's ``ignore_index``). A word's other sub-tokens get ``IGNORE`` too
(``label_pieces="first"``) or, with ``"all"``, its continuation label (B-X -> I-X), as the
Hugging Face example's ``label_all_tokens`` does, stored as ``CONTINUED - label`` so that a
batch still tells which positions are word starts: exactly those with a label >= 0.
Predictions map back to words through the same first sub-tokens, so words -> sub-tokens ->
words round-trips.

People's texts are cut into words on whitespace (CoNLL's tokenization), or, for a model
that labels every piece, the way the tokenizer cuts them (:func:`tokenizer_words`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE = -100
CONTINUED = -1000  # a continuation sub-token's label l is stored as CONTINUED - l


def align_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    inside: Sequence[int] | None = None,
) -> list[int]:
    """Per-sub-token labels from per-word labels (``word_ids`` from a fast tokenizer).

    ``inside`` (label -> its continuation label, see :func:`inside_labels`): every later
    sub-token of a word is labelled too, as ``CONTINUED - inside[label]``; without it, they
    are ``IGNORE``. A word labelled ``IGNORE`` (document context) stays ignored throughout.
    """
    out, previous = [], None
    for wid in word_ids:
        if wid is None:
            out.append(IGNORE)
        elif wid != previous:
            out.append(word_labels[wid])
        elif inside is None or word_labels[wid] == IGNORE:
            out.append(IGNORE)
        else:
            out.append(CONTINUED - inside[word_labels[wid]])
        previous = wid
    return out


def inside_labels(classes: Sequence[str]) -> list[int]:
    """Each label's continuation label: B-X -> I-X where the tag set has I-X, else itself."""
    index = {tag: i for i, tag in enumerate(classes)}
    return [
        index.get(f"I-{tag[2:]}", i) if tag.startswith("B-") else i for i, tag in enumerate(classes)
    ]


def word_starts(labels: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Where a batch's labels are scored: the first sub-token of every kept word (a tensor
    or, for a served request's key read on the event loop, a numpy array)."""
    return labels >= 0


def piece_targets(labels: torch.Tensor) -> torch.Tensor:
    """The class every labelled sub-token is trained towards (``IGNORE`` elsewhere)."""
    return torch.where(labels <= CONTINUED, CONTINUED - labels, labels)


def first_subtokens(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word index -> position of its first sub-token (words cut by truncation are absent)."""
    first: dict[int, int] = {}
    for pos, wid in enumerate(word_ids):
        if wid is not None and wid not in first:
            first[wid] = pos
    return first


def words_from_tokens(
    word_ids: Sequence[int | None], token_values: Sequence[int], n_words: int, fill: int
) -> tuple[list[int], int]:
    """Per-word values read at each word's first sub-token.

    Words the tokenizer truncated away get ``fill`` (the "O" label); their count is returned
    so callers can warn about it.
    """
    first = first_subtokens(word_ids)
    values = [token_values[first[w]] if w in first else fill for w in range(n_words)]
    return values, n_words - len(first)


def tokenizer_words(tokenizer: Any, text: str) -> list[tuple[str, int, int]]:
    """Words of ``text`` with their character offsets, as the tokenizer cuts it.

    A sub-token continues the word before it under the rule of transformers'
    ``TokenClassificationPipeline`` (word aggregation, e.g. ``aggregation_strategy="first"``):
    with a continuing-subword prefix (WordPiece's "##") a piece continues a word when its
    text is not as long as the characters it covers; without one, when no whitespace is at
    its start; an unknown token always starts a word. So "U.S." is four words for
    WordPiece ("U", ".", "S", "."), as a pipeline on the exported model reads it.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    prefix = _continuing_prefix(tokenizer)
    spans: list[list[int]] = []
    for token, tid, (start, end) in zip(
        tokenizer.convert_ids_to_tokens(ids), ids, offsets, strict=True
    ):
        if spans and tid != tokenizer.unk_token_id and _continues(token, text, start, end, prefix):
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(text[s:e], s, e) for s, e in spans]


def _continuing_prefix(tokenizer: Any) -> str | None:
    backend = getattr(tokenizer, "_tokenizer", None)
    return getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)


def _continues(token: str, text: str, start: int, end: int, prefix: str | None) -> bool:
    if prefix:
        return len(token) != end - start
    return start > 0 and " " not in text[start - 1 : start + 1]
