"""A BERT encoder that computes only the real tokens of a padded batch (inference).

A served batch mixes lengths: 25 random CoNLL sentences padded to their longest hold
2-3x their real tokens, and Hugging Face's forward computes every position. Here the
dense part (embeddings, Q/K/V, the attention output, the feed-forward layers, the layer
norms: about nine tenths of the work at sentence lengths) runs over the real tokens packed
into one [tokens, hidden] matrix, and attention runs per group of rows of similar length,
each group padded to its own longest row (:func:`attention_groups`). Rows may come in any
order and with holes in the mask: a token keeps its column as its position, as Hugging
Face gives it, and attention reads only the keys the mask keeps, wherever they sit.

At the positions the mask leaves out nothing is computed: the last hidden state there is
zero (Hugging Face's values there are never read by a head that counts). Eval mode only;
training, a decoder, cross-attention, position ids, embeddings given as input, and a
pooler whose first position is masked all run Hugging Face's own forward. This is the
serving backends' "ragged batching" (Triton's term): a batch of mixed lengths costs its
real tokens, so the batcher need not split it by length.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# An attention group's fixed cost, in units of rows x length^2 (its index_select, its
# attention call and its copy back, against the attention of one more padded position);
# measured on minilm-l6, one CPU thread: benchmarks/serve_unpadded.py.
GROUP_COST = 1000.0


def attention_groups(lengths: list[int], group_cost: float = GROUP_COST) -> list[list[int]]:
    """Rows (indices into ``lengths``) cut into groups that attention runs one call each.

    The rows are sorted by length; a group costs ``group_cost`` plus its rows times its
    longest length squared (attention's work grows with the length squared), and the cut
    is the cheapest one (dynamic programming over the group ends). Rows of length 0 are in
    no group.
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lengths.__getitem__)
    best = [0.0] + [float("inf")] * len(order)
    start_of = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        square = lengths[order[end - 1]] ** 2
        for start in range(end):
            cost = best[start] + group_cost + (end - start) * square
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    groups, end = [], len(order)
    while end:
        groups.append(order[start_of[end] : end])
        end = start_of[end]
    return groups[::-1]


class _Group:
    """One attention group's indices: where its rows' tokens are in the packed matrix."""

    def __init__(self, rows: list[int], starts: torch.Tensor, counts: torch.Tensor) -> None:
        index = torch.tensor(rows)
        width = int(counts[index].max())
        slots = torch.arange(width)
        valid = slots[None, :] < counts[index][:, None]  # [rows, width]
        gather = starts[index][:, None] + slots[None, :]
        self.shape = (len(rows), width)
        self.gather = torch.where(valid, gather, 0).reshape(-1)  # a padded slot reads token 0
        self.mask = None if bool(valid.all()) else valid[:, None, None, :]
        self.real = valid.reshape(-1).nonzero().squeeze(1)  # the slots that are tokens
        self.dest = gather.reshape(-1)[self.real]  # ... and their packed rows


class _FusedQKV(nn.Module):
    """One layer's query, key and value projections as one matrix (one GEMM, not three): a
    copy made when the encoder is wrapped, so wrap it once its weights are final (the
    serving backend wraps a loaded package); buffers, so ``.to(dtype)`` casts them too."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        layers = (attention.query, attention.key, attention.value)
        with torch.no_grad():
            weight, bias = (torch.cat([getattr(x, n) for x in layers]) for n in ("weight", "bias"))
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)


class UnpaddedBert(nn.Module):
    """Wraps a Hugging Face ``BertModel``: same call, same outputs at the real positions."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.config = bert.config
        self.qkv = nn.ModuleList(_FusedQKV(layer.attention.self) for layer in bert.encoder.layer)
        self.train(bert.training)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if not self._packable(input_ids, attention_mask, kwargs):
            return self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                **kwargs,
            )
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        assert input_ids is not None and attention_mask is not None  # _packable checked
        hidden = self._hidden(input_ids, attention_mask.bool(), token_type_ids)
        pooler = self.bert.pooler
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden, pooler_output=pooler(hidden) if pooler else None
        )

    def _packable(
        self, input_ids: torch.Tensor | None, mask: torch.Tensor | None, kwargs: dict
    ) -> bool:
        """Whether this call is one the packed path computes as Hugging Face does."""
        config = self.config
        if self.training or config.is_decoder or getattr(config, "add_cross_attention", False):
            return False
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return False
        given = [
            k for k, v in kwargs.items() if k != "return_dict" and v is not None and v is not False
        ]
        if given or input_ids is None or mask is None:  # position ids, embeddings, caches
            return False
        if input_ids.dim() != 2 or mask.shape != input_ids.shape:
            return False  # a [B, 1, T, T] mask (packed training rows) is not ours
        return self.bert.pooler is None or bool(mask[:, 0].all())

    def _hidden(
        self, input_ids: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """[B, T, H] last hidden states, zero where the mask is 0."""
        batch, width = input_ids.shape
        where = mask.reshape(-1).nonzero().squeeze(1)  # the real tokens, row after row
        if where.numel() == 0:  # no token at all
            hidden = self.bert.config.hidden_size
            return self.qkv[0].weight.new_zeros(batch, width, hidden)
        x = self._embed(input_ids.reshape(-1)[where], where % width, token_type_ids, where)
        counts = mask.sum(1).cpu()
        starts = torch.cumsum(counts, 0) - counts
        groups = [_Group(rows, starts, counts) for rows in attention_groups(counts.tolist())]
        groups = [_to(g, x.device) for g in groups]
        for layer, qkv in zip(self.bert.encoder.layer, self.qkv, strict=True):
            x = self._layer(layer, qkv, x, groups)
        out = x.new_zeros(batch * width, x.shape[1])
        out.index_copy_(0, where, x)
        return out.view(batch, width, -1)

    def _embed(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        where: torch.Tensor,
    ) -> torch.Tensor:
        emb = self.bert.embeddings
        if token_type_ids is None:
            types = emb.token_type_embeddings.weight[0]  # Hugging Face's default: type 0
        else:
            types = emb.token_type_embeddings(token_type_ids.reshape(-1)[where])
        x = emb.word_embeddings(ids) + types + emb.position_embeddings(positions)
        return emb.LayerNorm(x)

    def _layer(
        self, layer: nn.Module, qkv: _FusedQKV, x: torch.Tensor, groups: list[_Group]
    ) -> torch.Tensor:
        attention = layer.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        projected = F.linear(x, qkv.weight, qkv.bias)  # [T, 3H]
        whole = len(groups) == 1 and groups[0].mask is None  # one group, no padding
        context: torch.Tensor | None = None
        for group in groups:
            rows, width = group.shape
            q, k, v = (
                projected.index_select(0, group.gather)
                .view(rows, width, 3, heads, size)
                .permute(2, 0, 3, 1, 4)
            )
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=group.mask, scale=attention.scaling
            )
            out = out.transpose(1, 2).reshape(rows * width, heads * size)
            if whole:  # the slots are the tokens
                context = out
                break
            if context is None:  # attention's dtype (autocast may differ from x's)
                context = out.new_empty(x.shape[0], heads * size)
            context.index_copy_(0, group.dest, out.index_select(0, group.real))
        assert context is not None
        first = layer.attention.output
        x = first.LayerNorm(first.dense(context) + x)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
        return layer.output.LayerNorm(layer.output.dense(inner) + x)


def _to(group: _Group, device: torch.device) -> _Group:
    if device.type != "cpu":
        for name in ("gather", "mask", "real", "dest"):
            value = getattr(group, name)
            if value is not None:
                setattr(group, name, value.to(device, non_blocking=True))
    return group


def unpad_encoders(module: nn.Module) -> int:
    """Wrap every Hugging Face ``BertModel`` inside ``module`` in :class:`UnpaddedBert`, in
    place; how many were wrapped (0: nothing in it is a BERT encoder)."""
    try:
        from transformers import BertModel
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return 0
    wrapped = 0
    for parent in list(module.modules()):
        if isinstance(parent, UnpaddedBert):
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, BertModel):
                setattr(parent, name, UnpaddedBert(child))
                wrapped += 1
    return wrapped
