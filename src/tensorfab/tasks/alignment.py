"""Word <-> sub-token alignment for token classification.

A word's label goes on its first sub-token; its other sub-tokens and the special tokens get
``IGNORE`` (left out of the loss, as cross-entropy's ``ignore_index``). Predictions map back
to words through the same first sub-tokens, so words -> sub-tokens -> words round-trips.
"""

from __future__ import annotations

from collections.abc import Sequence

IGNORE = -100


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per-sub-token labels from per-word labels (``word_ids`` from a fast tokenizer)."""
    out, previous = [], None
    for wid in word_ids:
        if wid is None or wid == previous:
            out.append(IGNORE)
        else:
            out.append(word_labels[wid])
        previous = wid
    return out


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
