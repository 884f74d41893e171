"""A BERT encoder that computes only the real tokens of a padded batch (inference).

A served batch mixes lengths: 25 random CoNLL sentences padded to their longest hold
2-3x their real tokens, and Hugging Face's forward computes every position. Here the
dense part (embeddings, Q/K/V, the attention output, the feed-forward layers, the layer
norms: about nine tenths of the work at sentence lengths) runs over the real tokens packed
into one [tokens, hidden] matrix, and attention runs per group of rows of similar length:
the rows in length order cut into ``CHUNKS`` groups of equal row counts, each padded to its
own longest row. Rows may come in any order and with holes in the mask: a token keeps its
column as its position, as Hugging Face gives it, and attention reads only the keys the
mask keeps, wherever they sit.

Everything is tensor operations without Python decisions on the values, so the same
module runs eagerly (the PyTorch serving backend) and exports to one ONNX graph (NonZero,
TopK, Range, Gather, ScatterND) that does the same in onnxruntime. Its linear layers take
[1, tokens, hidden], so they export as MatMul, which INT8 quantization reads.

At the positions the mask leaves out nothing is computed: the last hidden state there is
zero (Hugging Face's values there are never read by a head that counts). Eval mode only;
training, a decoder, cross-attention, position ids, embeddings given as input, and (run
eagerly) a pooler whose first position is masked all run Hugging Face's own forward. This
is a runtime's "ragged batching" (Triton's term): a batch of mixed lengths costs its real
tokens, so the batcher need not split it by length.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Attention groups: the rows in length order cut into this many (fewer when the batch has
# fewer rows). Measured on minilm-l6, one CPU thread, pools of 23-25 random CoNLL
# sentences: 2-4 groups cost about the same, one group 10-30 % more in PyTorch and in
# onnxruntime (benchmarks/serve_unpadded.py).
CHUNKS = 3


class Chunk(NamedTuple):
    """One attention group: ``gather`` [rows, width] (the packed token of each slot; a
    padded slot reads token 0), the slots that are tokens (``real``), their packed rows
    (``dest``) and the key mask [rows, 1, 1, width]."""

    gather: torch.Tensor
    real: torch.Tensor
    dest: torch.Tensor
    mask: torch.Tensor


def attention_chunks(counts: torch.Tensor, chunks: int = CHUNKS) -> list[Chunk]:
    """The attention groups of rows holding ``counts`` tokens each (packed row after row).

    Rows are ranked by length; group ``c`` takes ranks ``[c*B/chunks, (c+1)*B/chunks)``,
    at least one (a batch of fewer rows repeats one: the same values written twice).
    """
    starts = torch.cumsum(counts, 0) - counts
    order = torch.argsort(counts)
    rows = torch.ones_like(counts).sum()
    out = []
    for c in range(chunks):
        low = torch.clamp(torch.div(c * rows, chunks, rounding_mode="floor"), max=rows - 1)
        high = torch.maximum(torch.div((c + 1) * rows, chunks, rounding_mode="floor"), low + 1)
        members = order[torch.arange(low, high, device=counts.device)]
        held = counts[members]
        slots = torch.arange(torch.clamp(held.max(), min=1), device=counts.device)
        valid = slots[None, :] < held[:, None]
        gather = starts[members][:, None] + slots[None, :]
        gather = torch.where(valid, gather, torch.zeros_like(gather))
        real = torch.nonzero(valid.reshape(-1)).squeeze(1)
        out.append(Chunk(gather, real, gather.reshape(-1)[real], valid[:, None, None, :]))
    return out


class _FusedQKV(nn.Module):
    """One layer's query, key and value projections as one matrix (one GEMM, not three): a
    copy made when the encoder is wrapped, so wrap it once its weights are final (the
    serving backend and export wrap a loaded package, and never save the wrapped one); buffers,
    so ``.to(dtype)`` casts them too."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        layers = (attention.query, attention.key, attention.value)
        with torch.no_grad():
            weight, bias = (torch.cat([getattr(x, n) for x in layers]) for n in ("weight", "bias"))
        # persistent: an ONNX export makes them initializers, which INT8 quantization reads
        # (non-persistent ones become Constant nodes, left in fp32)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)


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
        hidden = self._hidden(input_ids, attention_mask, token_type_ids)
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
        if self.bert.pooler is None or torch.jit.is_tracing():
            return True  # traced for export: the served rows are right-padded
        return bool(mask[:, 0].all())  # the pooler reads the first position

    def _hidden(
        self, input_ids: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """[B, T, H] last hidden states, zero where the mask is 0."""
        batch, width = input_ids.shape
        flat = mask.reshape(-1)
        where = torch.nonzero(flat).squeeze(1)  # the real tokens, row after row
        counts = mask.sum(1)
        x = self._embed(input_ids.reshape(-1)[where], where % width, token_type_ids, where)
        chunks = attention_chunks(counts) if where.numel() else []
        for layer, qkv in zip(self.bert.encoder.layer, self.qkv, strict=True):
            x = self._layer(layer, qkv, x, chunks)
        out = torch.zeros(flat.shape[0], x.shape[-1], dtype=x.dtype, device=x.device)
        return out.index_put((where,), x[0]).view(batch, width, -1)

    def _embed(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        where: torch.Tensor,
    ) -> torch.Tensor:
        """[1, tokens, H]: a leading axis, so the linear layers export as MatMul."""
        emb = self.bert.embeddings
        if token_type_ids is None:
            types = emb.token_type_embeddings.weight[0]  # Hugging Face's default: type 0
        else:
            types = emb.token_type_embeddings(token_type_ids.reshape(-1)[where])
        x = emb.word_embeddings(ids) + types + emb.position_embeddings(positions)
        return emb.LayerNorm(x)[None]

    def _layer(
        self, layer: nn.Module, qkv: _FusedQKV, x: torch.Tensor, chunks: list[Chunk]
    ) -> torch.Tensor:
        attention = layer.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        projected = F.linear(x, qkv.weight, qkv.bias)[0]  # [T, 3H]
        context = None
        for chunk in chunks:
            rows, width = chunk.gather.shape
            q, k, v = (
                projected[chunk.gather.reshape(-1)]
                .reshape(rows, width, 3, heads, size)
                .permute(2, 0, 3, 1, 4)
            )
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=chunk.mask, scale=attention.scaling
            )
            out = out.transpose(1, 2).reshape(rows * width, heads * size)[chunk.real]
            if context is None:  # attention's dtype (autocast may differ from x's)
                context = torch.zeros(x.shape[1], heads * size, dtype=out.dtype, device=x.device)
            context = context.index_put((chunk.dest,), out)
        if context is None:  # no token at all
            context = torch.zeros_like(x[0])
        first = layer.attention.output
        x = first.LayerNorm(first.dense(context[None]) + x)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
        return layer.output.LayerNorm(layer.output.dense(inner) + x)


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
