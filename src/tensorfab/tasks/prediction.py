"""What people read from a model's outputs: entities, labels and probabilities.

Split in two halves so that every caller shares them: a task's ``input_batches`` turns
people's inputs into graph feeds, and its ``rows`` turns the logits computed for them into
result rows (with the helpers here: word spans, entities, softmax, image rows);
:func:`predict_rows` joins them. ``tensorfab predict`` computes the logits with the PyTorch
graph in between; the inference server computes them through its dynamic batcher and
whichever runtime serves the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tensorfab.tasks.base import Batch, Feed, Inputs, Task


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Whitespace words of ``text`` with their character offsets (CoNLL's tokenization)."""
    words = text.split()
    if " ".join(words) == text:  # words one space apart (CoNLL's): offsets by counting
        spans, pos = [], 0
        for word in words:
            spans.append((word, pos, pos + len(word)))
            pos += len(word) + 1
        return spans
    spans, pos = [], 0
    for word in words:
        start = text.index(word, pos)
        spans.append((word, start, start + len(word)))
        pos = start + len(word)
    return spans


def decode_entities(
    text: str, spans: list[tuple[str, int, int]], tags: list[str], scores: list[float]
) -> list[dict[str, Any]]:
    """IOB2 word tags -> entities with character spans and the mean word probability."""
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (_, start, end), tag, score in zip(spans, tags, scores, strict=True):
        kind = tag[2:] if tag != "O" else None
        continues = current is not None and tag.startswith("I-") and kind == current["type"]
        if continues:
            current["end"] = end
            current["scores"].append(score)
            continue
        current = {"type": kind, "start": start, "end": end, "scores": [score]} if kind else None
        if current:
            entities.append(current)
    for ent in entities:
        ent["text"] = text[ent["start"] : ent["end"]]
        ent["score"] = sum(ent["scores"]) / len(ent["scores"])
        del ent["scores"]
    return entities


def softmax(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, in float64 numpy.

    numpy on the host, not torch: the rows are small and this runs per request in a
    server, where torch's intra-op thread pool would only contend with the runtime's.
    """
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().float().cpu().numpy()
    z = np.array(logits, dtype=np.float64)  # a copy of its own, worked in place
    z -= z.max(-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(-1, keepdims=True)
    return z


def predict_rows(
    task: Task,
    inputs: Inputs,
    logits_of: Callable[[Feed], torch.Tensor | np.ndarray],
    *,
    batch_size: int | None = None,
    top_k: int = 3,
) -> list[dict[str, Any]]:
    """The task's rows for every input, in input order; ``logits_of`` runs one feed."""
    rows: dict[int, dict[str, Any]] = {}
    for feed, key in task.input_batches(inputs, batch_size):
        rows.update(task.rows(inputs, key, logits_of(feed), top_k))
    return [rows[i] for i in range(len(rows))]


@torch.no_grad()
def predict_texts(
    logits_of: Callable[[Batch], torch.Tensor],
    task: Task,
    texts: list[str],
    device: torch.device | str = "cpu",
) -> list[dict[str, Any]]:
    """Rows for raw texts, with ``logits_of`` run on the task's own batches (a training-side
    forward such as ``task.logits``), for comparing the two paths."""
    inputs = Inputs(texts, [])
    rows: dict[int, dict[str, Any]] = {}
    for _, batch in task.input_batches(inputs):
        on_device = tuple(t.to(device) for t in batch)
        rows.update(task.rows(inputs, batch, logits_of(on_device), 3))
    return [rows[i] for i in range(len(texts))]


def image_rows(
    names: list[str], logits: torch.Tensor | np.ndarray, labels: list[str], top_k: int = 3
) -> list[dict[str, Any]]:
    """Label, score and the ``top_k`` classes with probabilities for each image."""
    rows = []
    for name, p in zip(names, softmax(logits), strict=True):
        top = np.argsort(-p, kind="stable")[: min(top_k, len(labels))]
        rows.append(
            {
                "input": name,
                "label": labels[int(top[0])],
                "score": float(p[top[0]]),
                "top": {labels[int(i)]: float(p[i]) for i in top},
            }
        )
    return rows
