"""What each CPU lever of advise's model does to the CPU validation rows: the model on the
committed calibration, whole and with one part taken out.

* without the GEMM grid: every matrix product at the one 512 x 512 peak (session 15's);
* with the old kind of convolution curve: shares by depth only, read off the calibration's
  NCHW 3 x 3 rows of 28 x 28 images at its smallest batch (close to session 15's one
  generic 32 x C x 28 x 28 curve);
* with one bandwidth figure (the add on 8 MiB) and no memory-bound classes beyond
  pooling (session 15's).

Uses the committed calibration and the measured runs (``tests/fixtures/advise/
cpu-2026-11-30.json``); the host part is measured again on the meta device as it runs.
A diagnosis, not a calibration: nothing here is read back by advise.

    nice -n 10 .venv/bin/python benchmarks/advise_ablate_cpu.py
writes benchmarks/results/cpu-2026-12-01-advise-ablation.json.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tensorfab.advise import SpecProfiler
from tensorfab.advise.model import Device, cpu_from_calibration, step_time
from tensorfab.advise.workloads import profile_named
from tensorfab.files import write_text_atomic
from tensorfab.spec import load_spec

CALIBRATION = Path("benchmarks/results/cpu-2026-11-30-advise-calibrate.json")
RUNS = Path("tests/fixtures/advise/cpu-2026-11-30.json")
OUT = Path("benchmarks/results/cpu-2026-12-01-advise-ablation.json")


def _depth_only(curves: dict[str, Any]) -> list[list[float]]:
    """The NCHW 3 x 3 curve's 28 x 28 rows at the smallest batch: a share by depth."""
    found = []
    for depth, by_pixels in curves["nchw-k3"]:
        points = next(p for pixels, p in by_pixels if pixels == 784)
        found.append([depth, points[0][1]])
    return found


NEW_CLASSES = ("random", "embedding_backward", "foreach", "fused_optimizer")


def device(no_grid: bool, old_conv: bool, one_bandwidth: bool = False) -> Device:
    data = copy.deepcopy(json.loads(CALIBRATION.read_text()))
    if one_bandwidth:
        data.pop("bandwidth_curve", None)
        for name in NEW_CLASSES:
            data["efficiency"].pop(name, None)
    if no_grid:
        data.pop("gemm_tflops", None)
    if old_conv:
        for name in ("convolution", "convolution_backward"):
            data["efficiency"][name] = _depth_only(data["efficiency"][name])
    return cpu_from_calibration(data)


def main() -> None:
    runs = json.loads(RUNS.read_text())["runs"]
    lenet = profile_named("lenet-train", 1, 0, "fp32")
    cases = {
        "lenet-train-b64-fp32": (lenet, 64),
        "lenet-train-b512-fp32": (lenet, 512),
        "bert-base-infer-b1-s128-fp32": (profile_named("bert-base-infer", 1, 128, "fp32"), 1),
        "minilm-ner-b16-fp32": (
            SpecProfiler(load_spec("examples/conll2003-minilm.yaml"))("fp32"),
            16,
        ),
    }
    variants = {
        "full model": (False, False),
        "no GEMM grid": (True, False),
        "depth-only convolution curve": (False, True),
        "one bandwidth, no new memory classes": (False, False, True),
        "none of the three (session 15's kind of model)": (True, True, True),
    }
    table = {}
    for label, flags in variants.items():
        cpu = device(*flags)
        table[label] = {
            run_id: step_time(p.with_batch(b), cpu, "fp32").step_s * 1e3 / runs[run_id]["min_ms"]
            for run_id, (p, b) in cases.items()
        }
        print(label, " | ".join(f"{k} {v:.2f}" for k, v in table[label].items()))
    result = {
        "date": "2026-12-01",
        "command": "nice -n 10 .venv/bin/python benchmarks/advise_ablate_cpu.py",
        "load_average_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "ratio": "predicted / measured step time",
        "variants": table,
    }
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
