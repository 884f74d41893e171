"""BERT-base for NER with random weights: the baseline model of the ``bert-base-ner`` workload.

The tutorial loads ``bert-base-cased`` with ``AutoModelForTokenClassification``; no weights are
downloaded here, so the model is the same shape built from a ``BertConfig`` (12 layers, hidden
768, 12 heads, feed-forward 3072: BertConfig's defaults) with fresh weights, on minilm's
uncased vocabulary (30,522 tokens, the same size as bert-base-uncased's). Speed does not
depend on the weights. The loop is ``ner.train_steps``.
"""

from __future__ import annotations

from torch import nn

# BertConfig's defaults, written out so the tensorfab side can ask for the same shape.
BERT_BASE_SHAPE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}


def build_model(num_labels: int, vocab_size: int) -> nn.Module:
    """A fresh BERT-base with a token-classification head of ``num_labels`` tags."""
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(vocab_size=vocab_size, num_labels=num_labels, **BERT_BASE_SHAPE)
    return BertForTokenClassification(config)
