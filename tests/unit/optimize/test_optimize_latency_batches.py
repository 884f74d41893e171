"""How the latency report draws batches from the held-out length mix (pure logic)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tensorfab.optimize.latency import length_batches, timed_batches
from tensorfab.tasks.image_classification import ImageClassification
from tensorfab.tasks.token_classification import TokenClassification

TEXT_TASK = TokenClassification(["O", "B-PER"])  # no tokenizer: random ids up to 20000


def _padding(groups: list[list[int]]) -> int:
    return sum(max(g) * len(g) - sum(g) for g in groups)


def test_batches_are_full_draw_every_sentence_equally_and_sort_by_length() -> None:
    lengths = [5, 40, 12, 7, 33, 9, 21, 18, 3, 27]
    groups = length_batches(lengths, 4, seed=1, window=2)
    assert all(len(g) == 4 for g in groups)
    assert all(g == sorted(g) for g in groups)
    counts = Counter(n for g in groups for n in g)
    assert set(counts) == set(lengths) and len(set(counts.values())) == 1
    assert length_batches(lengths, 4, seed=1, window=2) == groups
    assert length_batches(lengths, 4, seed=2, window=2) != groups


def test_sorting_windows_cuts_the_padding_a_server_computes() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 60, 200).tolist()
    unsorted = length_batches(lengths, 8, window=1)
    sorted_windows = length_batches(lengths, 8, window=8)
    assert _padding(sorted_windows) < 0.5 * _padding(unsorted)


def test_a_mix_smaller_than_a_batch_is_repeated() -> None:
    groups = length_batches([10, 20], 8, window=1)
    assert groups == [[10] * 4 + [20] * 4]
    assert len(length_batches([10, 20, 30], 4, window=2)) == 3  # 12 draws: 3 full batches


def test_empty_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="no sentence lengths"):
        length_batches([], 4)


def test_text_batches_pad_to_their_longest_and_count_real_tokens() -> None:
    batches = timed_batches(TEXT_TASK, 4, [5, 9, 2, 30, 7, 11, 4, 8], seq_len=32)
    assert batches
    for b in batches:
        ids, mask = b.feed["input_ids"], b.feed["attention_mask"]
        assert ids.shape == mask.shape and ids.shape[0] == b.sequences == 4
        assert b.tokens == int(mask.sum())
        assert ids.shape[1] == int(mask.sum(axis=1).max())  # padded to the longest, no more
        assert np.all(ids[mask == 0] == 0)
    (fixed,) = timed_batches(TEXT_TASK, 3, None, seq_len=16)
    assert fixed.feed["input_ids"].shape == (3, 16) and fixed.tokens == 48


def test_image_batches_are_uint8_of_the_input_shape() -> None:
    task = ImageClassification(["a", "b"], image_shape=(1, 8, 8))
    (b,) = timed_batches(task, 5, [3, 4], seq_len=32)
    assert b.feed["images"].shape == (5, 1, 8, 8) and b.feed["images"].dtype == np.uint8
    assert b.sequences == 5 and b.tokens == 0
