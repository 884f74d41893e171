"""``--calibrate`` checks every value it reads (advise/calibration.py): one error line
naming the file and the field for each bad one, before anything is profiled."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tensorfab.advise.report import load_calibration
from tensorfab.errors import TensorfabError

H100 = "NVIDIA H100 80GB HBM3"
MICRO = {
    "kind": "micro",
    "environment": {"device": "cuda", "device_name": H100},
    "matmul": {"bf16": {"tflops": 600.0}, "fp32": {"tflops": 50.0}, "fp8": {"tflops": None}},
    "bandwidth_gb_s": {"device_to_device": 1500.0, "host_memcpy": 20.0},
}
SPEC = {"task": "image-classification", "model": {"name": "lenet"}, "train": {"compile": False}}
RESULT = {
    "workload": "lenet-mnist",
    "batch_size": 64,
    "tensorfab": {
        "precision": "bf16",
        "step_time_ms": {"median": 2.0},
        "settings": {"spec": SPEC},
    },
}
TRAIN = {
    "kind": "train",
    "environment": {"device": "cuda", "device_name": H100},
    "results": [RESULT],
}


def _load(tmp_path: Path, data: object, text: str | None = None) -> dict:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data) if text is None else text)
    return load_calibration(path)


def _changed(base: dict, path: str, value: object) -> dict:
    """``base`` with the value at dotted ``path`` (list items by index) set; DROP removes."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DROP:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return data


DROP = object()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hostopus": 4}, "the calibration: unknown keys hostopus (known: host_op_us, gpus)"),
        ({"notes": "x"}, "unknown keys notes"),
        ({"host_op_us": "abc"}, "host_op_us must be a number from 0.001 to 1e+06, not 'abc'"),
        ({"host_op_us": -5}, "host_op_us must be a number from"),
        ({"host_op_us": 0}, "host_op_us must be a number from"),
        ({"host_op_us": True}, "host_op_us must be a number from"),
        ({"gpus": []}, "gpus must be an object, not []"),
        ({"gpus": {"h999": {}}}, "gpus: unknown keys h999 (known: b200, "),
        ({"gpus": {"H100-SXM": {}}}, "gpus: unknown keys H100-SXM"),
        ({"gpus": {"h100-sxm": "fast"}}, "gpus.h100-sxm must be an object, not 'fast'"),
        ({"gpus": {"h100-sxm": {"bandwith_gb_s": 1}}}, "gpus.h100-sxm: unknown keys bandwith"),
        ({"gpus": {"h100-sxm": {"tflops": "fast"}}}, "gpus.h100-sxm.tflops must be an object"),
        (
            {"gpus": {"t4": {"tflops": {"bf16": 100}}}},
            "gpus.t4.tflops: unknown keys bf16 (known: fp32, fp16)",
        ),
        ({"gpus": {"l4": {"tflops": {"bf16": 0}}}}, "gpus.l4.tflops.bf16 must be a number from"),
        ({"gpus": {"l4": {"tflops": {"bf16": 1e-300}}}}, "gpus.l4.tflops.bf16 must be a number"),
        ({"gpus": {"l4": {"tflops": {"bf16": "700"}}}}, "gpus.l4.tflops.bf16 must be a number"),
        ({"gpus": {"l4": {"bandwidth_gb_s": 0}}}, "gpus.l4.bandwidth_gb_s must be a number from"),
        ({"gpus": {"l4": {"bandwidth_gb_s": 1e300}}}, "gpus.l4.bandwidth_gb_s must be a number"),
        ({"gpus": {"l4": {"price_usd_h": -3}}}, "gpus.l4.price_usd_h must be a number >= 0"),
        ({"gpus": {"l4": {"host_scale": 0}}}, "gpus.l4.host_scale must be a number from 1e-06"),
        ({"gpus": {"l4": {"device_scale": "x"}}}, "gpus.l4.device_scale must be a number"),
        ([1, 2], "expected a JSON object, not [1, 2]"),
        ({"kind": "infer"}, "unknown keys kind"),
    ],
)
def test_a_bad_calibration_object_is_refused_by_field(
    tmp_path: Path, data: object, message: str
) -> None:
    with pytest.raises(TensorfabError) as err:
        _load(tmp_path, data)
    assert str(err.value).startswith(f"--calibrate {tmp_path / 'cal.json'}: ")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_nan_and_infinity_in_the_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"host_op_us must be a number .*, not nan"):
        _load(tmp_path, None, '{"host_op_us": NaN}')
    bad = json.dumps(_changed(MICRO, "bandwidth_gb_s.device_to_device", float("inf")))
    with pytest.raises(TensorfabError, match=r"bandwidth_gb_s.device_to_device .*, not inf"):
        _load(tmp_path, None, bad)


def test_a_good_object_passes_with_its_numbers_as_floats(tmp_path: Path) -> None:
    data = {"host_op_us": 4, "gpus": {"t4": {"tflops": {"fp16": 50}, "price_usd_h": 0}}}
    assert _load(tmp_path, data) == {
        "host_op_us": 4.0,
        "gpus": {"t4": {"tflops": {"fp16": 50.0}, "price_usd_h": 0.0}},
    }


def test_bench_micro_keeps_the_gpus_precisions_and_doubles_the_copy(tmp_path: Path) -> None:
    assert _load(tmp_path, MICRO) == {
        "gpus": {"h100-sxm": {"tflops": {"bf16": 600.0, "fp32": 50.0}, "bandwidth_gb_s": 3000.0}}
    }


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("matmul", DROP, "matmul must be an object, not None"),
        ("matmul", [1, 2], "matmul must be an object, not [1, 2]"),
        ("matmul.bf16", "fast", "matmul.bf16 must be an object, not 'fast'"),
        ("matmul.bf16.tflops", -600, "matmul.bf16.tflops must be a number from 0.001"),
        ("matmul.bf16.tflops", "600", "matmul.bf16.tflops must be a number"),
        ("matmul.bf16.tflops", 0, "matmul.bf16.tflops must be a number"),
        ("bandwidth_gb_s", None, "bandwidth_gb_s must be an object, not None"),
        ("bandwidth_gb_s.device_to_device", "1500", "device_to_device must be a number"),
        ("bandwidth_gb_s.device_to_device", -1, "device_to_device must be a number"),
        ("environment", None, "environment must be an object, not None"),
        ("environment.device_name", 7, "environment.device_name must be a string, not 7"),
        ("environment.device_name", "NVIDIA H100 MIG 1g.10gb", "is not a GPU of the catalogue"),
        ("environment.device", "cpu", "is not a GPU of the catalogue"),
    ],
)
def test_a_bad_bench_micro_result_is_refused_by_field(
    tmp_path: Path, path: str, value: object, message: str
) -> None:
    with pytest.raises(TensorfabError) as err:
        _load(tmp_path, _changed(MICRO, path, value))
    assert str(err.value).startswith("--calibrate ") and message in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("results", [], "results must be a non-empty list, not []"),
        ("results", {}, "results must be a non-empty list"),
        ("results.0", None, "results[0] must be an object, not None"),
        ("results.0", "x", "results[0] must be an object, not 'x'"),
        ("environment", [1], "environment must be an object, not [1]"),
        ("environment.device_name", "NVIDIA GeForce GTX 480", "not a GPU of the catalogue"),
        ("results.0.workload", 5, "result 0 (5): workload must be a string"),
        ("results.0.tensorfab", "x", "result 0 ('lenet-mnist'): tensorfab must be an object"),
        ("results.0.tensorfab.step_time_ms", None, "tensorfab.step_time_ms must be an object"),
        ("results.0.tensorfab.step_time_ms.median", 0, "tensorfab.step_time_ms.median must be"),
        ("results.0.tensorfab.step_time_ms.median", -5, "step_time_ms.median must be a number"),
        ("results.0.tensorfab.step_time_ms.median", 1e300, "step_time_ms.median must be a nu"),
        ("results.0.tensorfab.step_time_ms.median", "fast", "step_time_ms.median must be a nu"),
        ("results.0.batch_size", 0, "batch_size must be an integer from 1 to 2147483647, not 0"),
        ("results.0.batch_size", -64, "batch_size must be an integer from 1"),
        ("results.0.batch_size", 64.7, "batch_size must be an integer from 1"),
        ("results.0.batch_size", 10**12, "batch_size must be an integer from 1"),
        ("results.0.tensorfab.precision", "fp8", "tensorfab.precision must be one of fp32, tf32"),
        ("results.0.tensorfab.precision", ["bf16"], "tensorfab.precision must be one of"),
        ("environment.device_name", "Tesla T4", "tensorfab.precision: t4 has no bf16 (it has"),
        (
            "results.0.tensorfab.settings.spec",
            "hello",
            "tensorfab.settings.spec must be an object, not 'hello'",
        ),
        ("results.0.tensorfab.settings.spec.task", "telepathy", "settings.spec is not a job spec"),
    ],
)
def test_a_bad_bench_train_result_is_refused_by_field(
    tmp_path: Path, path: str, value: object, message: str
) -> None:
    with pytest.raises(TensorfabError) as err:
        _load(tmp_path, _changed(TRAIN, path, value))
    assert str(err.value).startswith("--calibrate ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"compile": True}, "compiled runs are not modelled; rerun bench train --compile off"),
        ({"privacy": {"epsilon": 8.0}}, "DP-SGD runs (train.privacy) are not modelled"),
    ],
)
def test_a_file_of_compiled_or_dp_runs_only_is_refused(
    tmp_path: Path, train: dict, message: str
) -> None:
    data = _changed(TRAIN, "results.0.tensorfab.settings.spec.train", train)
    with pytest.raises(TensorfabError, match="no result left: ") as err:
        _load(tmp_path, data)
    assert message in str(err.value)
