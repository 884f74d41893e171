"""The KServe v2 / Triton inference protocol: request parsing, validation, responses.

Tensors travel as JSON (``data`` is the flattened row-major contents) or, with Triton's
binary-tensor extension, as raw little-endian bytes after the JSON header, whose length
is given by the ``Inference-Header-Content-Length`` HTTP header; ``tritonclient.http``
uses the binary form by default. Every problem with a request is a :class:`ProtocolError`
carrying the HTTP status and a message naming the offending tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorfab.optimize.runtime import TensorSpec

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's name of a numpy dtype (FP32, INT64, ...)."""
    return next(k for k, v in DATATYPES.items() if np.dtype(v) == dtype)


class ProtocolError(Exception):
    """A request the server cannot serve; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool]  # requested output name -> wants binary data
    binary_default: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH}: {header_length!r} is not a number") from None
        if not 0 <= size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH}: {size} is outside the {len(body)}-byte body")
        json_part, binary = body[:size], body[size:]
    try:
        request = json.loads(json_part)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body: malformed JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise ProtocolError("request body: expected a JSON object with an 'inputs' list")
    return request, binary


def _tensor(item: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    """One input tensor from its JSON description (and the binary part); the new offset."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProtocolError("inputs: each input needs a 'name', 'shape', 'datatype' and data")
    name = item["name"]
    datatype, shape = item.get("datatype"), item.get("shape")
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not supported")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = int(np.prod(shape)) if shape else 1
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if size != count * dtype.itemsize or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size} does not match {shape}")
        array = np.frombuffer(binary, dtype, count, offset).reshape(shape)
        return name, array.astype(dtype.newbyteorder("="), copy=False), offset + size
    if "data" not in item:
        raise ProtocolError(f"input {name!r}: no 'data' and no binary_data_size")
    try:
        array = np.asarray(item["data"], dtype=DATATYPES[datatype])
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"input {name!r}: data is not {datatype}") from None
    if array.size != count:
        raise ProtocolError(f"input {name!r}: {array.size} values for shape {shape}")
    return name, array.reshape(shape), offset


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """An infer request (JSON or JSON + binary tensors) as numpy arrays."""
    request, binary = _header(body, header_length)
    inputs, offset = {}, 0
    for item in request["inputs"]:
        name, array, offset = _tensor(item, binary, offset)
        if name in inputs:
            raise ProtocolError(f"input {name!r}: given twice")
        inputs[name] = array
    parameters = request.get("parameters") or {}
    binary_default = bool(parameters.get("binary_data_output", False))
    outputs = {}
    for out in request.get("outputs") or []:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise ProtocolError("outputs: each requested output needs a 'name'")
        wants = (out.get("parameters") or {}).get("binary_data", binary_default)
        outputs[out["name"]] = bool(wants)
    request_id = request.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None,
        inputs,
        outputs,
        binary_default,
        parameters,
    )


def check_inputs(
    inputs: dict[str, np.ndarray], specs: list[TensorSpec], max_rows: int | None
) -> int:
    """Check names, datatypes and shapes against the model's signature; return the rows."""
    want = {s.name: s for s in specs}
    missing = sorted(want.keys() - inputs.keys())
    extra = sorted(inputs.keys() - want.keys())
    if missing or extra:
        raise ProtocolError(
            f"inputs: the model takes {sorted(want)}; missing {missing}, unexpected {extra}"
        )
    shapes = []
    for name, array in inputs.items():
        spec = want[name]
        if array.dtype != np.dtype(DATATYPES[spec.datatype]):
            got = datatype_of(array.dtype)
            raise ProtocolError(
                f"input {name!r}: datatype {got}, the model expects {spec.datatype}"
            )
        expected = ["batch", *spec.shape]
        fits = array.ndim == len(expected) and all(
            d == -1 or d == n for d, n in zip(spec.shape, array.shape[1:], strict=True)
        )
        if not fits:
            shown = [d if d != -1 else "any" for d in expected]
            raise ProtocolError(f"input {name!r}: shape {list(array.shape)}, expected {shown}")
        shapes.append(array.shape)
    if len({s[0] for s in shapes}) > 1:
        raise ProtocolError(f"inputs: batch sizes differ {[s[0] for s in shapes]}")
    # inputs with a sequence axis (token ids and their mask) must agree on its length
    sequences = {a.shape for n, a in inputs.items() if -1 in want[n].shape}
    if len(sequences) > 1:
        raise ProtocolError(f"inputs: token inputs must have one shape, got {sorted(sequences)}")
    rows = int(shapes[0][0])
    if rows == 0:
        raise ProtocolError("inputs: the batch is empty (0 rows)")
    if max_rows is not None and rows > max_rows:
        raise ProtocolError(f"inputs: {rows} rows exceed the model's max_batch_size {max_rows}")
    return rows


def check_tokens(
    inputs: dict[str, np.ndarray], vocab_size: int | None, max_positions: int | None
) -> None:
    """Refuse token inputs the model cannot embed, before they join a batch.

    An id outside the embedding table, an empty row or one longer than the position table
    makes the runtime fail (onnxruntime's ``Gather idx=...``) for the whole batch the
    request is merged into, so each request is checked alone here and answered with a 400
    naming the input and the first offending position. ``None`` skips a bound the model
    does not have (no position table) or that could not be worked out.
    """
    ids = inputs.get("input_ids")
    if ids is None or ids.ndim != 2:
        return
    length = int(ids.shape[1])
    if length < 1 or (max_positions is not None and length > max_positions):
        most = f"1 to {max_positions}" if max_positions is not None else "at least 1"
        raise ProtocolError(f"input 'input_ids': {length} tokens per row; the model takes {most}")
    if vocab_size is not None:
        outside = np.argwhere((ids < 0) | (ids >= vocab_size))
        if len(outside):
            at = [int(i) for i in outside[0]]
            raise ProtocolError(
                f"input 'input_ids': token id {int(ids[tuple(at)])} at {at} is outside "
                f"the vocabulary (0..{vocab_size - 1})"
            )
    mask = inputs.get("attention_mask")
    if mask is not None:
        wrong = np.argwhere((mask != 0) & (mask != 1))
        if len(wrong):
            at = [int(i) for i in wrong[0]]
            raise ProtocolError(
                f"input 'attention_mask': value {int(mask[tuple(at)])} at {at}; "
                "a mask holds only 0 and 1"
            )


def infer_response(
    model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    if request.outputs:
        unknown = sorted(request.outputs.keys() - outputs.keys())
        if unknown:
            raise ProtocolError(f"outputs: the model has no output {unknown}")
        chosen = {n: outputs[n] for n in request.outputs}
    else:
        chosen = outputs
    described, blobs = [], []
    for name, array in chosen.items():
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.outputs.get(name, request.binary_default):
            blob = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.flatten().tolist()
        described.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        head["id"] = request.id
    header = json.dumps(head).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
