"""The CRF: IOB2's rule as masks, its likelihood and Viterbi against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tensorfab.models.crf import (
    FORBIDDEN,
    allowed_transitions,
    compact,
    crf_nll,
    new_crf_weights,
    viterbi,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _path_score(em: torch.Tensor, path: tuple[int, ...], w: torch.Tensor) -> float:
    """Score of one tag path by the definition, forbidden steps included."""
    allowed, start_ok = allowed_transitions(TAGS)
    n = len(TAGS)
    score = (w[n, path[0]] if start_ok[path[0]] else FORBIDDEN) + em[0, path[0]]
    for k in range(1, len(path)):
        a, b = path[k - 1], path[k]
        score += (w[a, b] if allowed[a, b] else FORBIDDEN) + em[k, b]
    return float(score + w[n + 1, path[-1]])


def test_iob2_forbids_an_inside_tag_after_o_another_type_or_first() -> None:
    allowed, start = allowed_transitions(TAGS)
    assert start.tolist() == [True, True, False, True, False]
    # column I-PER: only B-PER and I-PER may come before it
    assert allowed[:, 2].tolist() == [False, True, True, False, False]
    assert allowed[:, 4].tolist() == [False, False, False, True, True]
    assert allowed[:, [0, 1, 3]].all()


def test_viterbi_repairs_an_inside_tag_after_o() -> None:
    # each word's best tag alone: O then I-PER (invalid); best valid path: B-PER I-PER
    em = torch.full((1, 2, 5), -5.0)
    em[0, 0, 0], em[0, 0, 1] = 2.0, 1.9
    em[0, 1, 2] = 3.0
    em[0, 1, 0] = 0.0
    assert viterbi(em, torch.ones(1, 2, dtype=torch.bool), new_crf_weights(5), TAGS) == [[1, 2]]


def test_likelihood_and_viterbi_match_brute_force_over_every_path() -> None:
    torch.manual_seed(0)
    w = torch.randn(7, 5)
    em = torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    tags = torch.tensor([[1, 2, 0], [3, 4, 0]])
    got = crf_nll(em, tags, mask, w, TAGS)
    want, best = 0.0, []
    for row, length in enumerate((3, 2)):
        paths = list(itertools.product(range(5), repeat=length))
        scores = [_path_score(em[row], p, w) for p in paths]
        log_z = math.log(sum(math.exp(s - max(scores)) for s in scores)) + max(scores)
        gold = tuple(tags[row, :length].tolist())
        want += log_z - _path_score(em[row], gold, w)
        best.append(list(paths[scores.index(max(scores))]))
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert viterbi(em, mask, w, TAGS) == best


def test_compact_moves_the_kept_positions_left_in_order() -> None:
    em = torch.arange(8.0).reshape(2, 4, 1)
    keep = torch.tensor([[False, True, False, True], [True, False, False, False]])
    words, mask, order = compact(em, keep)
    assert words[..., 0].tolist() == [[1.0, 3.0], [4.0, 5.0]]
    assert mask.tolist() == [[True, True], [True, False]]
    assert order.tolist() == [[1, 3], [0, 1]]


def test_rows_without_words_cost_nothing_and_decode_to_nothing() -> None:
    em = torch.zeros(2, 0, 5)
    mask = torch.zeros(2, 0, dtype=torch.bool)
    w = new_crf_weights(5)
    assert float(crf_nll(em, torch.zeros(2, 0, dtype=torch.long), mask, w, TAGS)) == 0.0
    assert viterbi(em, mask, w, TAGS) == [[], []]
