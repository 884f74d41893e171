"""Top-k ranking metrics per user: Hit, NDCG, Recall and MRR at k (RecBole's definitions).

Inputs are, per user, whether each of the top-k ranked items is relevant (``hits``, bool
[U, k], best first) and how many relevant items the user has (``relevant``). Recall divides
by all of them (not min(k, relevant)), NDCG's ideal ranking puts min(k, relevant) of them
first, MRR is 1 / rank of the first hit (0 without one).
"""

from __future__ import annotations

import torch


def ranking_metrics(hits: torch.Tensor, relevant: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-user ``hit@k``, ``ndcg@k``, ``recall@k``, ``mrr@k`` (float64 [U] each)."""
    hits = hits.to(torch.float64)
    k = hits.shape[1]
    relevant = relevant.to(torch.float64)
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2.0)
    dcg = (hits * discount).sum(dim=1)
    ideal_count = relevant.clamp(max=k).long()
    ideal = torch.cumsum(discount, 0)[(ideal_count - 1).clamp(min=0)] * (ideal_count > 0)
    first = torch.where(hits.any(dim=1), hits.argmax(dim=1).to(torch.float64) + 1, torch.inf)
    return {
        f"hit@{k}": hits.any(dim=1).to(torch.float64),
        f"ndcg@{k}": torch.where(ideal > 0, dcg / ideal.clamp(min=1e-12), 0.0),
        f"recall@{k}": hits.sum(dim=1) / relevant.clamp(min=1),
        f"mrr@{k}": 1.0 / first,
    }


def top_k_hits(scores: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """bool [U, k]: whether each of the ``k`` best-scored items is a target (False past the
    last item when there are fewer than ``k``)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = targets.gather(1, top)
    return torch.nn.functional.pad(hits, (0, k - hits.shape[1]), value=False)
