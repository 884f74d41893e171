"""KServe v2 request parsing (JSON and binary tensors), input checks, responses, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tensorfab.errors import TensorfabError
from tensorfab.optimize.runtime import TensorSpec
from tensorfab.package.repository import ModelConfig, load_model_config
from tensorfab.serve.protocol import (
    ProtocolError,
    check_inputs,
    check_tokens,
    chosen_outputs,
    infer_response,
    parse_infer_request,
)

TEXT = [TensorSpec("input_ids", "INT64", (-1,)), TensorSpec("attention_mask", "INT64", (-1,))]
IMAGE = [TensorSpec("images", "UINT8", (1, 2, 2))]


def _json(**request: object) -> bytes:
    return json.dumps(request).encode()


def test_json_tensors_are_parsed_row_major() -> None:
    body = _json(
        id="7",
        inputs=[
            {"name": "images", "shape": [1, 1, 2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4]}
        ],
    )
    request = parse_infer_request(body)
    assert request.id == "7" and not request.binary_default
    assert request.inputs["images"].dtype == np.uint8
    assert request.inputs["images"].tolist() == [[[[1, 2], [3, 4]]]]
    assert check_inputs(request.inputs, IMAGE, 8) == 1


def test_binary_tensors_follow_the_json_header() -> None:
    ids = np.array([[101, 2054, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    head = _json(
        inputs=[
            {"name": "input_ids", "shape": [1, 3], "datatype": "INT64",
             "parameters": {"binary_data_size": ids.nbytes}},
            {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64",
             "parameters": {"binary_data_size": mask.nbytes}},
        ],
        parameters={"binary_data_output": True},
    )  # fmt: skip
    request = parse_infer_request(head + ids.tobytes() + mask.tobytes(), str(len(head)))
    assert request.inputs["input_ids"].tolist() == ids.tolist()
    assert request.inputs["attention_mask"].tolist() == [[1, 1, 1]]
    assert request.binary_default
    body, header = infer_response("ner", "1", request, {"logits": np.ones((1, 3, 2), np.float32)})
    meta = json.loads(body[:header])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 24}
    assert np.frombuffer(body[header:], np.float32).tolist() == [1.0] * 6


def test_json_response_names_the_model_and_flattens_data() -> None:
    request = parse_infer_request(
        _json(
            id="a",
            inputs=[{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
            outputs=[{"name": "logits", "parameters": {"binary_data": False}}],
        )
    )
    body, header = infer_response("m", "2", request, {"logits": np.array([[1.5, 2.5]], np.float32)})
    assert header is None
    assert json.loads(body) == {
        "model_name": "m",
        "model_version": "2",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}],
        "id": "a",
    }


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"[]", None, "expected a JSON object with an 'inputs' list"),
        (_json(inputs=[{"name": "x", "shape": [2], "datatype": "COMPLEX", "data": [1]}]), None,
         "datatype 'COMPLEX' is not supported"),
        (_json(inputs=[{"name": "x", "shape": [3], "datatype": "INT64", "data": [1, 2]}]), None,
         "2 values for shape"),
        (_json(inputs=[{"name": "x", "shape": [1], "datatype": "INT64", "data": ["a"]}]), None,
         "input 'x': data\\[0\\] is \"a\", not an integer"),
        (_json(inputs=[{"name": "x", "shape": [1], "datatype": "UINT8", "data": [256]}]), None,
         "data is not UINT8"),
        (_json(inputs=[{"name": "x", "shape": [-1], "datatype": "INT64", "data": [1]}]), None,
         "non-negative"),
        (_json(inputs=[{"name": "x", "shape": [2], "datatype": "INT64",
                        "parameters": {"binary_data_size": 16}}]), None,
         "binary_data_size 16 does not match"),
        (b"{}", "abc", "is not a number"),
        (b"{}", "999", "outside the 2-byte body"),
    ],
)  # fmt: skip
def test_malformed_requests_name_the_problem(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        parse_infer_request(body, header)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"input_ids": np.ones((1, 3), np.int64)}, r"missing \['attention_mask'\]"),
        ({"input_ids": np.ones((1, 3), np.int32), "attention_mask": np.ones((1, 3), np.int64)},
         "datatype INT32, the model expects INT64"),
        ({"input_ids": np.ones((1, 3, 1), np.int64), "attention_mask": np.ones((1, 3), np.int64)},
         r"shape \[1, 3, 1\], expected \['batch', 'any'\]"),
        ({"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)},
         "batch sizes differ"),
        ({"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 3), np.int64)},
         "token inputs must have one shape"),
        ({"input_ids": np.ones((9, 3), np.int64), "attention_mask": np.ones((9, 3), np.int64)},
         "9 rows exceed the model's max_batch_size 8"),
    ],
)  # fmt: skip
def test_inputs_that_do_not_fit_the_signature_are_refused(inputs: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        check_inputs(inputs, TEXT, 8)


def _ids(rows: list[list[int]], mask: list[list[int]] | None = None) -> dict:
    ids = np.array(rows, np.int64).reshape(len(rows), -1)
    masks = np.ones_like(ids) if mask is None else np.array(mask, np.int64)
    return {"input_ids": ids, "attention_mask": masks}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (_ids([[101, 5, 6, 99999999, 102]]),
         "input 'input_ids': token id 99999999 at [0, 3] is outside the vocabulary (0..30521)"),
        (_ids([[101, 102], [101, -1]]),
         "input 'input_ids': token id -1 at [1, 1] is outside the vocabulary (0..30521)"),
        (_ids([[101, 30522]]),
         "input 'input_ids': token id 30522 at [0, 1] is outside the vocabulary (0..30521)"),
        (_ids([[]]), "input 'input_ids': 0 tokens per row; the model takes 1 to 16"),
        (_ids([[1] * 17]), "input 'input_ids': 17 tokens per row; the model takes 1 to 16"),
        (_ids([[101, 7, 102]], [[1, 2, 1]]),
         "input 'attention_mask': value 2 at [0, 1]; a mask holds only 0 and 1"),
        (_ids([[101, 7, 102]], [[1, 1, -1]]),
         "input 'attention_mask': value -1 at [0, 2]; a mask holds only 0 and 1"),
    ],
)  # fmt: skip
def test_tokens_the_model_cannot_embed_are_refused_naming_input_and_position(
    inputs: dict, message: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        check_tokens(inputs, vocab_size=30522, max_positions=16)
    assert str(info.value) == message and info.value.status == 400


def test_tokens_within_the_limits_pass_and_unknown_limits_are_not_checked() -> None:
    check_tokens(_ids([[0, 30521] + [1] * 14], [[1] * 8 + [0] * 8]), 30522, 16)
    check_tokens(_ids([[5] * 600]), vocab_size=None, max_positions=None)
    with pytest.raises(ProtocolError, match="0 tokens per row; the model takes at least 1"):
        check_tokens(_ids([[]]), vocab_size=None, max_positions=None)
    check_tokens({"images": np.zeros((1, 1, 2, 2), np.uint8)}, 10, 4)  # not a text model


def test_unknown_requested_output_is_an_error() -> None:
    request = parse_infer_request(
        _json(inputs=[{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
              outputs=[{"name": "probs"}])
    )  # fmt: skip
    with pytest.raises(ProtocolError, match=r"no output \['probs'\]"):
        chosen_outputs(request, {"logits": np.zeros((1, 2), np.float32)})


def test_model_config_defaults_and_errors_with_file_and_line(tmp_path: Path) -> None:
    assert load_model_config(tmp_path) == ModelConfig()
    (tmp_path / "config.yaml").write_text("max_batch_size: 16\nmax_queue_delay_us: -5\n")
    with pytest.raises(TensorfabError, match=r"config.yaml:2: max_queue_delay_us: .*greater than"):
        load_model_config(tmp_path)
    (tmp_path / "config.yaml").write_text("max_batch_size: 16\nbatching: true\n")
    with pytest.raises(TensorfabError, match=r"config.yaml:2: batching: unknown field"):
        load_model_config(tmp_path)


def _one(datatype: str, data: object, shape: list[int] | None = None) -> bytes:
    tensor = {"name": "input_ids", "shape": shape or [1, 4], "datatype": datatype, "data": data}
    return _json(inputs=[tensor])


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [1.9, 2, 3, 4], "data[0] is 1.9, not an integer"),
        ("INT64", [1, 2, 3, 2.0], "data[3] is 2.0, not an integer"),
        ("INT64", ["1", "2", "3", "4"], 'data[0] is "1", not an integer'),
        ("INT64", [True, False, True, True], "data[0] is true, not an integer"),
        ("INT64", [1, 2, 3, [4]], "data is not INT64"),
        ("UINT8", [1, 2, 3, -1], "data is not UINT8"),
        ("UINT64", [1, 2, 3, 2**64], "data is not UINT64"),
        ("INT32", [[1, 2], [3, 0.5]], "data[3] is 0.5, not an integer"),
        ("UINT8", [0.5, 1, 2, 3], "data[0] is 0.5, not an integer"),
        ("BOOL", [True, 1, False, True], "data[1] is 1, not true or false"),
    ],
)
def test_integer_and_bool_tensors_take_only_json_integers_and_booleans(
    datatype: str, data: object, message: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_infer_request(_one(datatype, data))
    assert str(info.value) == f"input 'input_ids': {message}" and info.value.status == 400


def test_exact_values_still_parse_and_a_fractional_mask_never_reaches_the_mask_check() -> None:
    parsed = parse_infer_request(_one("INT64", [[1, 2], [3, 4]], [2, 2])).inputs["input_ids"]
    assert parsed.dtype == np.int64 and parsed.tolist() == [[1, 2], [3, 4]]
    flags = parse_infer_request(_one("BOOL", [True, False, True, True])).inputs["input_ids"]
    assert flags.tolist() == [[True, False, True, True]]
    floats = parse_infer_request(_one("FP32", [1, 2.5, 3, 4])).inputs["input_ids"]
    assert floats.tolist() == [[1.0, 2.5, 3.0, 4.0]]  # a float tensor takes JSON integers too
    mask = {"name": "attention_mask", "shape": [1, 4], "datatype": "INT64", "data": [1, 1, 1, 0.5]}
    with pytest.raises(ProtocolError, match=r"attention_mask': data\[3\] is 0.5, not an integer"):
        parse_infer_request(_json(inputs=[mask]))
