"""The KServe v2 gRPC messages as the server's own types, and back.

The messages are those ``tritonclient`` ships, generated from Triton's
``grpc_service.proto`` (``tritonclient.grpc.service_pb2``, ``model_config_pb2``); no .proto
is copied here. A ``ModelInferRequest`` becomes the same
:class:`~tensorfab.serve.protocol.InferRequest` that the HTTP front parses, so both run one
inference path (``service.Service.infer``). Tensors come as ``raw_input_contents``
(little-endian bytes, what ``tritonclient.grpc`` sends) or as typed ``contents``; answers
always carry ``raw_output_contents``, as Triton's do. Every problem is a
:class:`ProtocolError` with the HTTP status the HTTP front would give, and
:func:`status_code` maps it to the gRPC code Triton uses for that kind of error.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from tensorfab.serve.protocol import (
    DATATYPES,
    InferRequest,
    ProtocolError,
    datatype_of,
    element_count,
)

# HTTP status of a ProtocolError -> gRPC code. Triton answers a model that is not ready, a
# full queue and a request that timed out in the queue with UNAVAILABLE, an unknown model
# with NOT_FOUND and a bad request with INVALID_ARGUMENT; the rest follow gRPC's own table
# of HTTP equivalents (401, 403, 408, 413).
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
}
# datatype -> the typed field of InferTensorContents that carries it (FP16: raw bytes only)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def status_code(http_status: int) -> grpc.StatusCode:
    """The gRPC code of a refusal the HTTP front answers with ``http_status``."""
    return STATUS_CODES.get(http_status, grpc.StatusCode.INTERNAL)


def _shape(tensor: Any) -> list[int]:
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input {tensor.name!r}: shape {shape} has a negative dimension")
    return shape


def _from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = element_count(shape, f"input {name!r}")
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(
            f"input {name!r}: {len(raw)} bytes of raw_input_contents for {datatype} {shape}"
        )
    array = np.frombuffer(raw, dtype, count).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _from_contents(name: str, datatype: str, shape: list[int], contents: Any) -> np.ndarray:
    count = element_count(shape, f"input {name!r}")
    field = CONTENTS.get(datatype)
    if field is None:
        raise ProtocolError(f"input {name!r}: {datatype} travels only in raw_input_contents")
    try:
        array = np.asarray(list(getattr(contents, field)), dtype=DATATYPES[datatype])
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"input {name!r}: contents are not {datatype}") from None
    if array.size != count:
        raise ProtocolError(f"input {name!r}: {array.size} values in {field} for shape {shape}")
    return array.reshape(shape)


def _tensor(tensor: Any, raw: bytes | None) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype[:20]!r} is not supported")
    shape = _shape(tensor)
    if raw is not None:
        return _from_raw(name, datatype, shape, raw)
    return _from_contents(name, datatype, shape, tensor.contents)


def _parameter(value: Any) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice else None


def _parameters(parameters: Any) -> dict[str, Any]:
    """The request's parameters as plain values; ``timeout`` (microseconds) must be an int."""
    out = {key: _parameter(value) for key, value in parameters.items()}
    if "timeout" in out:
        kind = parameters["timeout"].WhichOneof("parameter_choice")
        if kind not in ("int64_param", "uint64_param") or out["timeout"] < 0:
            raise ProtocolError("parameters.timeout: must be a non-negative integer")
    return out


def infer_request(message: Any) -> InferRequest:
    """A ``ModelInferRequest`` as the server's :class:`InferRequest` (all outputs binary)."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(
            f"raw_input_contents: {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(message.inputs):
        if tensor.name in inputs:
            raise ProtocolError(f"input {tensor.name!r}: given twice")
        inputs[tensor.name] = _tensor(tensor, raw[i] if raw else None)
    outputs = {out.name: True for out in message.outputs}
    parameters = _parameters(message.parameters)
    return InferRequest(message.id or None, inputs, outputs, True, parameters)


def infer_response(
    model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> Any:
    """The ``ModelInferResponse``: each output described, its bytes in raw_output_contents."""
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request.id or "")
    for name, array in outputs.items():
        tensor = response.outputs.add()
        tensor.name, tensor.datatype = name, datatype_of(array.dtype)
        tensor.shape.extend(int(d) for d in array.shape)
        little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        response.raw_output_contents.append(little.tobytes())
    return response


def _tensors(specs: list[dict[str, Any]]) -> list[Any]:
    meta = pb.ModelMetadataResponse.TensorMetadata
    return [meta(name=s["name"], datatype=s["datatype"], shape=s["shape"]) for s in specs]


def model_metadata(meta: dict[str, Any]) -> Any:
    """``ModelMetadataResponse`` of the metadata both fronts show."""
    return pb.ModelMetadataResponse(
        name=meta["name"],
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=_tensors(meta["inputs"]),
        outputs=_tensors(meta["outputs"]),
    )


def _kind(device: str) -> int:
    kinds = {"CPU": "KIND_CPU", "CUDA": "KIND_GPU"}
    return int(mc.ModelInstanceGroup.Kind.Value(kinds.get(device, "KIND_AUTO")))


def model_config(config: dict[str, Any]) -> Any:
    """Triton's ``ModelConfig`` message of the config both fronts show. With batching on,
    ``dims`` leave out the batch axis, as Triton's do; tensorfab's task and labels travel
    as the JSON of the ``tensorfab`` parameter."""
    rows = config["max_batch_size"]

    def dims(shape: list[int]) -> list[int]:
        return shape[1:] if rows else shape

    def data_type(name: str) -> int:
        return int(mc.DataType.Value(f"TYPE_{name}"))

    message = mc.ModelConfig(
        name=config["name"],
        platform=config["platform"],
        backend=config["backend"],
        max_batch_size=rows,
        input=[
            mc.ModelInput(name=t["name"], data_type=data_type(t["datatype"]), dims=dims(t["shape"]))
            for t in config["input"]
        ],
        output=[
            mc.ModelOutput(
                name=t["name"], data_type=data_type(t["datatype"]), dims=dims(t["shape"])
            )
            for t in config["output"]
        ],
        instance_group=[
            mc.ModelInstanceGroup(count=g["count"], kind=_kind(g["kind"]))
            for g in config["instance_group"]
        ],
    )
    if config["dynamic_batching"]:
        delay = config["dynamic_batching"]["max_queue_delay_microseconds"]
        message.dynamic_batching.max_queue_delay_microseconds = delay
    message.parameters["tensorfab"].string_value = json.dumps(config["tensorfab"])
    return message


def statistics(stats: dict[str, Any]) -> Any:
    """``ModelStatisticsResponse`` of the statistics both fronts show (same field names)."""
    return json_format.ParseDict(stats, pb.ModelStatisticsResponse())


def repository_index(rows: list[dict[str, Any]], ready_only: bool) -> Any:
    """``RepositoryIndexResponse``; ``ready_only`` keeps the versions that are READY."""
    index = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            index(
                name=r["name"], version=r["version"], state=r["state"], reason=r.get("reason", "")
            )
            for r in rows
            if not ready_only or r["state"] == "READY"
        ]
    )
