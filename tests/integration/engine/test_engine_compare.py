"""The CPU-vs-GPU epoch timing that the demo prints (run here as CPU vs CPU)."""

from __future__ import annotations

from tensorfab.engine.compare import available_devices, compare_devices
from tensorfab.spec import load_spec


def test_compare_times_one_epoch_per_device() -> None:
    spec = load_spec(None, ["data.limit_train=256", "data.limit_test=64", "data.batch_size=64"])
    result = compare_devices(spec, ["cpu", "cpu"])
    assert result["workload"] == "lenet-digits"
    rows = result["devices"]
    assert [r["device"] for r in rows] == ["cpu", "cpu"]
    assert all(r["samples"] == 256 and r["epoch_s"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["samples_per_s"] == 256 / rows[1]["epoch_s"]
    assert available_devices()[0] == "cpu"
