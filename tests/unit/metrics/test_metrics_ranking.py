"""Ranking metrics at k against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tensorfab.metrics.ranking import ranking_metrics, top_k_hits

L3 = 1 / math.log2(3)  # the discount of rank 2


def test_three_users_by_hand() -> None:
    hits = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    m = ranking_metrics(hits, torch.tensor([1, 2, 3]))
    assert m["hit@3"].tolist() == [1.0, 1.0, 0.0]
    assert m["recall@3"].tolist() == [1.0, 1.0, 0.0]
    assert m["mrr@3"].tolist() == [0.5, 1.0, 0.0]
    # user 1: dcg 1 + 1/log2(4) = 1.5, ideal 1 + 1/log2(3)
    assert m["ndcg@3"].tolist() == pytest.approx([L3, 1.5 / (1 + L3), 0.0])


def test_more_relevant_items_than_k() -> None:
    m = ranking_metrics(torch.ones(1, 3, dtype=torch.bool), torch.tensor([5]))
    assert m["ndcg@3"].item() == pytest.approx(1.0)  # the ideal holds only 3 of them
    assert m["recall@3"].item() == pytest.approx(0.6)  # RecBole divides by all 5


def test_top_k_hits_reads_the_best_scores_first() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    targets = torch.tensor([[True, False, True, False]])
    assert top_k_hits(scores, targets, 3).tolist() == [[False, False, True]]  # 1, 3, 2


def test_fewer_items_than_k_pads_with_misses() -> None:
    hits = top_k_hits(torch.tensor([[0.2, 0.8]]), torch.tensor([[True, False]]), 4)
    assert hits.tolist() == [[False, True, False, False]]
