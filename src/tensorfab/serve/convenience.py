"""The endpoint for people: what ``tensorfab predict`` takes in, its rows out.

It runs through the same checks, batcher and runtime as the protocol's infer endpoint;
only the decoding of the request (the task's ``decode_request``: texts, an image brought to
the training form) and the rows of the answer (the task's ``rows``) are added around it, so
a predict answer equals ``tensorfab predict`` on the same model. What the task did to the
inputs (an image inverted, fitted and centred) is in the answer's ``notes``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.serve.handoff import Handoff
from tensorfab.serve.protocol import ProtocolError
from tensorfab.serve.repository import LoadedVersion, ModelRepository
from tensorfab.tasks import OUTPUT, Inputs

DEFAULT_BATCH = 64  # rows per infer call when the model sets no max_batch_size


def decode(model: LoadedVersion, body: bytes) -> Inputs:
    """The request body as the task's inputs; a body the task cannot read is a 400."""
    if not body:
        raise ProtocolError("request body: empty")
    try:
        return model.task.decode_request(body, model.limits)
    except TensorfabError as exc:
        raise ProtocolError(str(exc)) from None


def prepare(model: LoadedVersion, body: bytes) -> tuple[Inputs, list[tuple[Any, Any]]]:
    """The request's inputs and their feeds (the task's ``input_batches``: a text's tokens),
    each feed at most the model's ``max_batch_size`` rows."""
    inputs = decode(model, body)
    size = min(len(inputs.data), model.config.max_batch_size or DEFAULT_BATCH)
    return inputs, list(model.task.input_batches(inputs, size))


async def predict(
    repo: ModelRepository, model: LoadedVersion, body: bytes, handoff: Handoff
) -> dict[str, Any]:
    """Result rows as ``tensorfab predict --json`` prints them, for one request body.

    The body is decoded and made into feeds (an image's pixels, a text's tokens) in a
    worker thread, off the event loop, with the other requests waiting then (``handoff``);
    Pillow and the tokenizers release the GIL while they work, so threads suffice.
    """
    inputs, feeds = await handoff.run(prepare, model, body)

    async def one(feed: Any, key: Any) -> dict[int, dict[str, Any]]:
        logits = (await repo.infer(model, feed))[OUTPUT]
        return model.task.rows(inputs, key, logits, 3)

    rows: dict[int, dict[str, Any]] = {}
    if len(feeds) == 1:  # a text or an image: awaited here, not in a task of its own
        parts = [await one(*feeds[0])]
    else:
        parts = await asyncio.gather(*(one(f, k) for f, k in feeds))
    for part in parts:
        rows.update(part)
    answer = {
        "model_name": model.name,
        "model_version": model.version,
        "predictions": [rows[i] for i in range(len(rows))],
    }
    if inputs.notes:
        answer["notes"] = list(inputs.notes)
    return answer
