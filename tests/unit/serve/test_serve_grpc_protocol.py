"""KServe v2 gRPC messages to the server's InferRequest and back, and the status codes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the grpc extra is not installed")
import grpc
from tritonclient.grpc import service_pb2 as pb

from tensorfab.serve import grpc_protocol as wire
from tensorfab.serve.grpc_server import _within_deadline
from tensorfab.serve.protocol import InferRequest, ProtocolError


def _request(
    *tensors: tuple[str, str, list[int]], raw: list[bytes] | None = None
) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", id="r7")
    for name, datatype, shape in tensors:
        message.inputs.add(name=name, datatype=datatype, shape=shape)
    message.raw_input_contents.extend(raw or [])
    return message


def test_raw_inputs_become_the_same_arrays_little_endian() -> None:
    ids = np.array([[1, 2, 3]], dtype="<i8")
    pixels = np.arange(4, dtype=np.uint8).reshape(1, 1, 2, 2)
    message = _request(
        ("input_ids", "INT64", [1, 3]), ("images", "UINT8", [1, 1, 2, 2]),
        raw=[ids.tobytes(), pixels.tobytes()],
    )  # fmt: skip
    message.outputs.add(name="logits")
    request = wire.infer_request(message)
    np.testing.assert_array_equal(request.inputs["input_ids"], ids)
    np.testing.assert_array_equal(request.inputs["images"], pixels)
    assert request.id == "r7" and request.outputs == {"logits": True}


def test_typed_contents_and_parameters() -> None:
    message = _request(("x", "FP32", [2, 2]))
    message.inputs[0].contents.fp32_contents.extend([0.5, 1.5, 2.5, 3.5])
    message.parameters["timeout"].int64_param = 2500
    message.parameters["priority"].string_param = "high"
    request = wire.infer_request(message)
    np.testing.assert_array_equal(request.inputs["x"], [[0.5, 1.5], [2.5, 3.5]])
    assert request.inputs["x"].dtype == np.float32
    assert request.parameters == {"timeout": 2500, "priority": "high"}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (_request(("x", "FP32", [2]), raw=[b"\0" * 4]), r"input 'x': 4 bytes .* FP32 \[2\]"),
        (_request(("x", "FP32", [2]), ("y", "FP32", [1]), raw=[b"\0" * 8]), "1 entries for 2"),
        (_request(("x", "BYTES", [1])), "datatype 'BYTES' is not supported"),
        (_request(("x", "FP16", [1])), "FP16 travels only in raw_input_contents"),
        (_request(("x", "FP32", [-1, 2])), r"shape \[-1, 2\] has a negative dimension"),
        (_request(("x", "FP32", [2**32, 2**32])), "holds more than"),
        (_request(("x", "FP32", [3])), r"0 values in fp32_contents for shape \[3\]"),
        (_request(("x", "UINT8", [1]), ("x", "UINT8", [1]), raw=[b"\1", b"\2"]), "given twice"),
    ],
)
def test_malformed_requests_are_protocol_errors(message: pb.ModelInferRequest, error: str) -> None:
    with pytest.raises(ProtocolError, match=error) as exc:
        wire.infer_request(message)
    assert exc.value.status == 400


def test_timeout_parameter_must_be_an_integer() -> None:
    message = _request(("x", "UINT8", [1]), raw=[b"\1"])
    message.parameters["timeout"].string_param = "soon"
    with pytest.raises(ProtocolError, match=r"parameters\.timeout: must be a non-negative integer"):
        wire.infer_request(message)


def test_deadline_caps_the_queue_timeout() -> None:
    def request(**parameters: int) -> InferRequest:
        return InferRequest(None, {}, {}, True, dict(parameters))

    assert _within_deadline(request(timeout=10), None).parameters == {"timeout": 10}
    assert _within_deadline(request(timeout=10), 0.5).parameters == {"timeout": 10}
    assert _within_deadline(request(timeout=900_000), 0.5).parameters == {"timeout": 500_000}
    assert _within_deadline(request(), 0.25).parameters == {"timeout": 250_000}
    assert _within_deadline(request(), -1.0).parameters == {"timeout": 1}  # already past


def test_response_carries_raw_little_endian_outputs() -> None:
    logits = np.array([[1.0, -2.5]], dtype=np.float32)
    response = wire.infer_response("m", "3", InferRequest("a", {}, {}, True), {"logits": logits})
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "a")
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("logits", "FP32", [1, 2])
    assert response.raw_output_contents[0] == logits.astype("<f4").tobytes()


def test_status_codes_follow_triton() -> None:
    assert wire.status_code(400) == grpc.StatusCode.INVALID_ARGUMENT
    assert wire.status_code(404) == grpc.StatusCode.NOT_FOUND
    assert wire.status_code(429) == grpc.StatusCode.UNAVAILABLE  # queue full
    assert wire.status_code(503) == grpc.StatusCode.UNAVAILABLE  # not ready, timed out
    assert wire.status_code(413) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wire.status_code(401) == grpc.StatusCode.UNAUTHENTICATED
    assert wire.status_code(500) == grpc.StatusCode.INTERNAL


def test_model_config_leaves_out_the_batch_axis_when_batching() -> None:
    config = {
        "name": "ner",
        "platform": "tensorfab_onnxruntime",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "input": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}],
        "output": [{"name": "logits", "datatype": "FP32", "shape": [-1, -1, 9]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 50},
        "instance_group": [{"count": 2, "kind": "CPU"}],
        "tensorfab": {"task": "token-classification", "labels": ["O"]},
    }
    message = wire.model_config(config)
    assert list(message.input[0].dims) == [-1] and list(message.output[0].dims) == [-1, 9]
    assert message.input[0].data_type == wire.mc.DataType.Value("TYPE_INT64")
    assert message.instance_group[0].kind == wire.mc.ModelInstanceGroup.Kind.Value("KIND_CPU")
    assert message.dynamic_batching.max_queue_delay_microseconds == 50
    unbatched = wire.model_config({**config, "max_batch_size": 0, "dynamic_batching": None})
    assert list(unbatched.input[0].dims) == [-1, -1]
    assert not unbatched.HasField("dynamic_batching")
