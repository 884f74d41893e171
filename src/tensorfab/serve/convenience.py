"""The endpoint for people: text in, entities or labels out; image bytes in, label out.

It runs through the same checks, batcher and runtime as the protocol's infer endpoint;
only the encoding (tokenizer, image decoding) and the decoding (``tasks.prediction``) are
added around it, so a convenience answer equals ``tensorfab predict`` on the same model.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tensorfab.data.imagefolder import read_image_bytes
from tensorfab.errors import TensorfabError
from tensorfab.serve.protocol import ProtocolError
from tensorfab.serve.repository import LoadedVersion, ModelRepository
from tensorfab.tasks.prediction import image_rows, text_batches, text_rows

MAX_TEXTS = 1024
OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _texts(body: bytes) -> list[str]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body: malformed JSON ({exc})") from None
    texts = payload.get("instances") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        texts = [payload["text"]]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ProtocolError(
            'request body: expected {"instances": ["text", ...]} or {"text": "..."}'
        )
    if len(texts) > MAX_TEXTS:
        raise ProtocolError(f"request body: {len(texts)} texts; at most {MAX_TEXTS} per request")
    if not all(t.strip() for t in texts):
        raise ProtocolError("request body: empty text")
    return texts


async def _text_predictions(
    repo: ModelRepository, model: LoadedVersion, body: bytes
) -> list[dict[str, Any]]:
    texts = _texts(body)
    size = min(len(texts), model.config.max_batch_size or 64)
    batches = list(text_batches(model.task, texts, size))

    async def one(batch: Any) -> dict[int, dict[str, Any]]:
        feed = {"input_ids": batch[1].numpy(), "attention_mask": batch[2].numpy()}
        logits = (await repo.infer(model, feed))["logits"]
        return text_rows(model.task, texts, batch, logits)

    rows: dict[int, dict[str, Any]] = {}
    for part in await asyncio.gather(*(one(b) for b in batches)):
        rows.update(part)
    return [rows[i] for i in range(len(texts))]


def _image_problem(exc: TensorfabError) -> str:
    """Why the body is not an image, without Python's object reprs.

    PIL names the stream it was given (``<_io.BytesIO object at 0x...>``), which tells a
    client nothing and leaks an address; the decoder's own error (the exception's context)
    is used when there is one, with any such repr cut out.
    """
    cause = exc.__cause__ or exc.__context__
    detail = str(cause) if cause is not None else str(exc).removeprefix("request body: ")
    detail = OBJECT_REPR.sub("", detail).strip().rstrip(":").strip() or "unknown format"
    return f"request body: not an image PIL can read ({detail})"


async def _image_prediction(
    repo: ModelRepository, model: LoadedVersion, body: bytes
) -> list[dict[str, Any]]:
    shape = model.meta["input"]
    try:
        image = read_image_bytes(body, shape["channels"], shape["height"], "request body")
    except TensorfabError as exc:
        raise ProtocolError(_image_problem(exc)) from None
    logits = (await repo.infer(model, {"images": image[None].numpy()}))["logits"]
    return image_rows(["request body"], logits, model.meta["labels"])


async def predict(repo: ModelRepository, model: LoadedVersion, body: bytes) -> dict[str, Any]:
    """Result rows as ``tensorfab predict --json`` prints them, for one request body."""
    if not body:
        raise ProtocolError("request body: empty")
    if model.meta["input"]["kind"] == "text":
        rows = await _text_predictions(repo, model, body)
    else:
        rows = await _image_prediction(repo, model, body)
    return {"model_name": model.name, "model_version": model.version, "predictions": rows}
