"""A linear-chain CRF over IOB2 tags: negative log-likelihood and constrained Viterbi.

The CRF's weights are one ``[C + 2, C]`` matrix (``crf_weights``, a parameter of the
encoder when ``head: token-crf``): rows ``0..C-1`` score the transition from tag i to tag
j, row ``C`` starting with j, row ``C + 1`` ending with j. Tag sequences IOB2 forbids
(``I-X`` after ``O``, after ``B-Y``/``I-Y`` of another type, or first) get a large
negative score in training and decoding alike, so Viterbi never returns one. The
inference graph returns emissions only; decoding runs outside it, with the weights the
model package records.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CRF_PARAM = "crf_weights"
FORBIDDEN = -10000.0  # finite: a gold sequence that breaks IOB2 costs much, not inf/nan


def new_crf_weights(num_classes: int) -> torch.nn.Parameter:
    """Zero transition, start and end scores: the model starts as its linear head."""
    return torch.nn.Parameter(torch.zeros(num_classes + 2, num_classes))


def allowed_transitions(classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """IOB2's rule as masks: ``[C, C]`` (tag i may precede tag j) and ``[C]`` (j may start)."""
    n = len(classes)
    allowed = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, tag in enumerate(classes):
        if not tag.startswith("I-"):
            continue
        start[j] = False
        for i, prev in enumerate(classes):
            allowed[i, j] = prev[2:] == tag[2:] and prev.startswith(("B-", "I-"))
    return allowed, start


def _scores(
    weights: torch.Tensor, classes: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Transition ``[C, C]``, start ``[C]`` and end ``[C]`` scores with IOB2's rule applied."""
    allowed, start_ok = allowed_transitions(classes)
    n = len(classes)
    weights = weights.float()
    forbid = torch.tensor(FORBIDDEN, device=weights.device)
    trans = torch.where(allowed.to(weights.device), weights[:n], forbid)
    start = torch.where(start_ok.to(weights.device), weights[n], forbid)
    return trans, start, weights[n + 1]


def compact(
    emissions: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept positions of each row, moved left: emissions ``[B, W, C]``, mask ``[B, W]``,
    and the positions they came from ``[B, W]`` (W: the most kept positions in a row)."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept first, in order
    width = int(keep.sum(1).max().item()) if keep.numel() else 0
    order = order[:, :width]
    mask = torch.gather(keep, 1, order)
    words = torch.gather(emissions, 1, order[:, :, None].expand(-1, -1, emissions.shape[-1]))
    return words, mask, order


def crf_nll(
    emissions: torch.Tensor,
    tags: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    classes: Sequence[str],
) -> torch.Tensor:
    """Summed negative log-likelihood of ``tags`` ``[B, W]`` under the CRF (left-aligned
    ``mask``; rows without a word add nothing)."""
    if emissions.shape[1] == 0:
        return emissions.sum() * 0.0
    trans, start, end = _scores(weights, classes)
    em = emissions.float()
    tags = tags.clamp(min=0) * mask  # padding reads tag 0, masked out below
    rows = torch.arange(em.shape[0], device=em.device)
    alpha = start + em[:, 0]  # [B, C]
    gold = start[tags[:, 0]] + em[rows, 0, tags[:, 0]]
    for w in range(1, em.shape[1]):
        on = mask[:, w]
        step = torch.logsumexp(alpha[:, :, None] + trans[None], dim=1) + em[:, w]
        alpha = torch.where(on[:, None], step, alpha)
        gain = trans[tags[:, w - 1], tags[:, w]] + em[rows, w, tags[:, w]]
        gold = gold + torch.where(on, gain, torch.zeros_like(gain))
    last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0))[:, 0]
    log_z = torch.logsumexp(alpha + end, dim=1)
    nll = log_z - (gold + end[last])
    return torch.where(mask[:, 0], nll, torch.zeros_like(nll)).sum()


@torch.no_grad()
def viterbi(
    emissions: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, classes: Sequence[str]
) -> list[list[int]]:
    """The best tag sequence of each row (its masked words only) under IOB2's rule."""
    n_rows, width, n = emissions.shape
    if width == 0:
        return [[] for _ in range(n_rows)]
    trans, start, end = _scores(weights.detach().to(emissions.device), classes)
    em = emissions.float()
    score = start + em[:, 0]
    same = torch.arange(n, device=em.device).expand(n_rows, n)
    back = []
    for w in range(1, width):
        best, arg = (score[:, :, None] + trans[None]).max(dim=1)  # [B, C] over the previous tag
        on = mask[:, w, None]
        score = torch.where(on, best + em[:, w], score)
        back.append(torch.where(on, arg, same))
    path = [(score + end).argmax(-1)]
    for arg in reversed(back):
        path.append(arg.gather(1, path[-1][:, None])[:, 0])
    tags = torch.stack(path[::-1], dim=1).tolist()  # [B, W]
    lengths = mask.sum(1).tolist()
    return [row[:k] for row, k in zip(tags, lengths, strict=True)]
