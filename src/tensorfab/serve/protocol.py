"""The KServe v2 / Triton inference protocol: request parsing, validation, responses.

Tensors travel as JSON (``data`` is the flattened row-major contents) or, with Triton's
binary-tensor extension, as raw little-endian bytes after the JSON header, whose length
is given by the ``Inference-Header-Content-Length`` HTTP header; ``tritonclient.http``
uses the binary form by default. Every problem with a request is a :class:`ProtocolError`
carrying the HTTP status and a message naming the offending tensor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tensorfab.optimize.runtime import TensorSpec

HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_ELEMENTS = 2**31  # elements of one tensor, zeros aside; far above any body limit
MAX_DIGITS = 12  # of the header-length header
NonNegative = Annotated[int, Field(ge=0)]
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

# What numpy must infer from the JSON values of a datatype: integers for the integer types
# ("i", or "u" past int64), booleans for BOOL; anything else (a float, a string) is refused.
EXACT_KINDS: dict[str, str] = {
    **{t: "iu" for t in DATATYPES if t.startswith(("INT", "UINT"))},
    "BOOL": "b",
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


class _Open(BaseModel):
    """A parameters object: known keys typed, other keys kept (extensions may add some)."""

    model_config = ConfigDict(extra="allow", strict=True)


class TensorParameters(_Open):
    binary_data_size: NonNegative | None = None
    binary_data: bool | None = None


class RequestParameters(_Open):
    binary_data_output: bool | None = None
    timeout: NonNegative | None = None


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    shape: list[NonNegative]
    datatype: str
    parameters: TensorParameters | None = None
    data: Any = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    parameters: TensorParameters | None = None


class InferRequestBody(BaseModel):
    """The JSON part of a KServe v2 infer request, every field typed: a wrong one is a 400."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str | None = None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = None
    parameters: RequestParameters | None = None


ERROR_WORDS = {
    "json_invalid": "malformed JSON",
    "model_type": "expected a JSON object",
    "missing": "is required",
    "extra_forbidden": "is not a field of the protocol",
    "greater_than_equal": "must be a non-negative integer",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "string_type": "must be a string",
}


def _first_error(exc: ValidationError) -> str:
    """The first problem of a request, named by its place: ``inputs[0].shape[0]: ...``."""
    error = exc.errors(include_url=False)[0]
    place = ""
    for part in error["loc"]:
        place += f"[{part}]" if isinstance(part, int) else f".{part}" if place else str(part)
    words = ERROR_WORDS.get(error["type"], error["msg"])
    if error["type"] == "json_invalid":
        words += f" ({error['ctx'].get('error', '')})" if error.get("ctx") else ""
    if error["type"] == "model_type" and not place:
        words += " with an 'inputs' list"
    return f"request body: {place + ': ' if place else ''}{words}"


def _header(body: bytes, header_length: str | None) -> tuple[InferRequestBody, bytes]:
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not header_length.isdigit() or len(header_length) > MAX_DIGITS:
            raise ProtocolError(f"{HEADER_LENGTH}: {header_length[:20]!r} is not a number")
        size = int(header_length)
        if size > len(body):
            raise ProtocolError(f"{HEADER_LENGTH}: {size} is outside the {len(body)}-byte body")
        json_part, binary = body[:size], body[size:]
    try:  # pydantic-core's parser: no Python recursion, a depth limit of its own
        return InferRequestBody.model_validate_json(json_part), binary
    except ValidationError as exc:
        raise ProtocolError(_first_error(exc)) from None


def element_count(shape: list[int], where: str) -> int:
    """The elements of ``shape`` in Python integers (no overflow), refused past the limit.

    Dimensions are multiplied without the zeros too, so ``[2**32, 2**32, 0]`` is refused
    rather than handed to numpy, whose int64 arithmetic would overflow on it.
    """
    nonzero = math.prod(max(d, 1) for d in shape)
    if nonzero > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: shape {shape} holds more than {MAX_ELEMENTS} elements")
    return math.prod(shape)


def _tensor(item: InputTensor, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    """One input tensor from its JSON description (and the binary part); the new offset."""
    name, datatype, shape = item.name, item.datatype, item.shape
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype[:20]!r} is not supported")
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = element_count(shape, f"input {name!r}")
    size = item.parameters.binary_data_size if item.parameters else None
    if size is not None:
        if size != count * dtype.itemsize or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size} does not match {shape}")
        array = np.frombuffer(binary, dtype, count, offset).reshape(shape)
        return name, array.astype(dtype.newbyteorder("="), copy=False), offset + size
    if "data" not in item.model_fields_set:
        raise ProtocolError(f"input {name!r}: no 'data' and no binary_data_size")
    array = json_values(name, datatype, item.data)
    if array.size != count:
        raise ProtocolError(f"input {name!r}: {array.size} values for shape {shape}")
    return name, array.reshape(shape), offset


def json_values(name: str, datatype: str, data: Any) -> np.ndarray:
    """A tensor's JSON ``data`` as an array of ``datatype``, refused (400) when a value is not
    one: integer types take JSON integers only and BOOL only true/false, as Triton does, so
    ``1.9``, ``2.0``, ``"1"`` or ``true`` is never truncated into an INT64 (nor ``0.5`` into
    a mask). The check is the dtype numpy infers for the parsed values (the conversion it
    does anyway), so exact data costs no Python loop; one integer list mixing in a boolean
    reads as an integer list (numpy promotes it), an all-boolean one is refused."""
    kinds = EXACT_KINDS.get(datatype)
    try:
        if kinds is None:
            return np.asarray(data, dtype=DATATYPES[datatype])
        array = np.asarray(data)
        if array.size and array.dtype.kind not in kinds:
            _refuse_inexact(name, datatype, data)  # raises, unless huge integers (kind "O")
            return np.asarray(data, dtype=DATATYPES[datatype])  # refuses those as overflow
        return _in_range(name, datatype, array)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ProtocolError(f"input {name!r}: data is not {datatype}") from None


def _in_range(name: str, datatype: str, array: np.ndarray) -> np.ndarray:
    """``array`` (integers or booleans, as numpy inferred them) cast to ``datatype``; a value
    the type cannot hold is refused rather than wrapped around."""
    target = np.dtype(DATATYPES[datatype])
    if target.kind != "b" and array.size and array.dtype != target:
        bounds = np.iinfo(target)
        if array.min() < bounds.min or array.max() > bounds.max:
            raise OverflowError
    return array.astype(target, copy=False)


def _refuse_inexact(name: str, datatype: str, data: Any) -> None:
    """Name the first value of integer (BOOL) ``data`` that is not a JSON integer (boolean)
    by its flat index; a Python loop, run only once numpy has seen a wrong kind."""
    flat = np.asarray(data, dtype=object).ravel().tolist()
    allowed = bool if datatype == "BOOL" else int
    at = next((i for i, value in enumerate(flat) if type(value) is not allowed), None)
    if at is None:
        return
    shown = json.dumps(flat[at], default=repr)
    shown = shown if len(shown) <= 24 else shown[:20] + "..."
    want = "true or false" if datatype == "BOOL" else "an integer"
    raise ProtocolError(f"input {name!r}: data[{at}] is {shown}, not {want}")


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """An infer request (JSON or JSON + binary tensors) as numpy arrays."""
    request, binary = _header(body, header_length)
    inputs, offset = {}, 0
    for item in request.inputs:
        name, array, offset = _tensor(item, binary, offset)
        if name in inputs:
            raise ProtocolError(f"input {name!r}: given twice")
        inputs[name] = array
    parameters = request.parameters or RequestParameters()
    binary_default = bool(parameters.binary_data_output)
    outputs = {}
    for out in request.outputs or []:
        wants = out.parameters.binary_data if out.parameters else None
        outputs[out.name] = binary_default if wants is None else wants
    return InferRequest(
        request.id,
        inputs,
        outputs,
        binary_default,
        parameters.model_dump(exclude_none=True),
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
    if vocab_size is not None and (ids.min() < 0 or ids.max() >= vocab_size):
        outside = np.argwhere((ids < 0) | (ids >= vocab_size))  # only on a refusal: its place
        if len(outside):
            at = [int(i) for i in outside[0]]
            raise ProtocolError(
                f"input 'input_ids': token id {int(ids[tuple(at)])} at {at} is outside "
                f"the vocabulary (0..{vocab_size - 1})"
            )
    mask = inputs.get("attention_mask")
    if mask is not None:
        wrong = (mask != 0) & (mask != 1)
        if wrong.any():  # only on a refusal: its place
            at = [int(i) for i in np.argwhere(wrong)[0]]
            raise ProtocolError(
                f"input 'attention_mask': value {int(mask[tuple(at)])} at {at}; "
                "a mask holds only 0 and 1"
            )


def chosen_outputs(request: InferRequest, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs the request asked for (all when it names none); an unknown name is a 400."""
    if not request.outputs:
        return outputs
    unknown = sorted(request.outputs.keys() - outputs.keys())
    if unknown:
        raise ProtocolError(f"outputs: the model has no output {unknown}")
    return {n: outputs[n] for n in request.outputs}


def infer_response(
    model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body of ``outputs`` (as :func:`chosen_outputs` picked them) and, when
    any output is binary, the JSON header's length."""
    described, blobs = [], []
    for name, array in outputs.items():
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
