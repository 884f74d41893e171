"""What people read from a model's outputs: entities, labels and probabilities.

Split in two halves so that every caller shares them: :func:`text_batches` turns raw texts
into padded model-input batches, and :func:`text_rows` / :func:`image_rows` turn the
logits computed for them into result rows. ``tensorfab predict`` computes the logits with
the PyTorch model in between; the inference server computes them through its dynamic
batcher and whichever runtime serves the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from tensorfab.data.text_types import TextExample, TokenExample
from tensorfab.tasks.alignment import IGNORE
from tensorfab.tasks.base import Batch
from tensorfab.tasks.eval_data import eval_batches
from tensorfab.tasks.text_tasks import TokenClassification


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Whitespace words of ``text`` with their character offsets (CoNLL's tokenization)."""
    spans, pos = [], 0
    for word in text.split():
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


def text_batches(
    task: Any, texts: list[str], batch_size: int, device: torch.device | str = "cpu"
) -> Iterable[Batch]:
    """Raw texts as padded batches ``(index, input_ids, attention_mask, labels)``.

    For token classification the texts are split into words on whitespace (CoNLL's
    tokenization); the labels are placeholders that mark each word's first sub-token.
    """
    if isinstance(task, TokenClassification):
        examples: list[Any] = [TokenExample(t.split(), ["O"] * len(t.split())) for t in texts]
    else:
        examples = [TextExample(t, task.classes[0]) for t in texts]
    return eval_batches(task, examples, batch_size, torch.device(device)).epoch(0)


def _token_row(task: Any, text: str, probs: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    spans = word_spans(text)
    words = probs[keep]  # [words, C]
    best = words.argmax(-1)
    tags = [task.classes[j] for j in best.tolist()]
    tags += ["O"] * (len(spans) - len(tags))  # words cut by truncation
    scores = words[np.arange(len(best)), best].tolist() + [0.0] * (len(spans) - len(best))
    return {"text": text, "tags": tags, "entities": decode_entities(text, spans, tags, scores)}


def _sequence_row(task: Any, text: str, probs: np.ndarray) -> dict[str, Any]:
    p = probs.tolist()
    top = max(range(len(p)), key=p.__getitem__)
    return {
        "text": text,
        "label": task.classes[top],
        "score": p[top],
        "probabilities": dict(zip(task.classes, p, strict=True)),
    }


def softmax(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, in float64 numpy.

    numpy on the host, not torch: the rows are small and this runs per request in a
    server, where torch's intra-op thread pool would only contend with the runtime's.
    """
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().float().cpu().numpy()
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def text_rows(
    task: Any, texts: list[str], batch: Batch, logits: torch.Tensor | np.ndarray
) -> dict[int, dict[str, Any]]:
    """Result rows of one batch from :func:`text_batches`, keyed by the text's index."""
    probs = softmax(logits)
    token = isinstance(task, TokenClassification)
    keep = (batch[3] != IGNORE).cpu().numpy()
    rows = {}
    for r, i in enumerate(batch[0].tolist()):
        if token:
            rows[i] = _token_row(task, texts[i], probs[r], keep[r])
        else:
            rows[i] = _sequence_row(task, texts[i], probs[r])
    return rows


@torch.no_grad()
def predict_texts(
    logits_of: Callable[[Batch], torch.Tensor],
    task: Any,
    texts: list[str],
    device: torch.device | str = "cpu",
) -> list[dict[str, Any]]:
    """Entities (token tasks) or label and probabilities (text tasks) for each text."""
    rows: dict[int, dict[str, Any]] = {}
    for batch in text_batches(task, texts, 64, device):
        rows.update(text_rows(task, texts, batch, logits_of(batch)))
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
