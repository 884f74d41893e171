"""Every validation comparison of docs/advise.md in one table: predicted vs measured.

The H100 figures of issue 19 (tests/fixtures/advise/h100-2026-11-23.json, bert-base-shape
training included, which the test leaves out for time) and this CPU's runs
(tests/fixtures/advise/cpu-2026-11-30.json), with the model as shipped.

    nice -n 10 .venv/bin/python benchmarks/advise_validation.py
writes benchmarks/results/cpu-2026-11-30-advise-validation.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tensorfab.advise import SpecProfiler, advise
from tensorfab.advise.model import cpu_from_calibration, gpu_device, step_time
from tensorfab.advise.workloads import profile_named
from tensorfab.files import write_text_atomic
from tensorfab.hardware import gpu_by_id
from tensorfab.hardware.device import cpu_model
from tensorfab.spec import load_spec

FIXTURES = Path("tests/fixtures/advise")
OUT = Path("benchmarks/results/cpu-2026-11-30-advise-validation.json")
CPU_CASES = {
    "lenet-train-b64-fp32": ("lenet-train", 64, 0),
    "lenet-train-b512-fp32": ("lenet-train", 512, 0),
    "bert-base-infer-b1-s128-fp32": ("bert-base-infer", 1, 128),
}


def main() -> None:
    h100 = json.loads((FIXTURES / "h100-2026-11-23.json").read_text())
    cpu_runs = json.loads((FIXTURES / "cpu-2026-11-30.json").read_text())["runs"]
    calibration = json.loads(
        Path("benchmarks/results/cpu-2026-11-30-advise-calibrate.json").read_text()
    )
    host = None  # each profile's own host time, measured on the meta device
    rows, cache = [], {}
    device = gpu_device(gpu_by_id(h100["gpu"]))
    for run in h100["runs"]:
        if "workload" not in run:
            continue
        key = (run["workload"], run.get("seq_len", 0), run["precision"])
        cache.setdefault(key, profile_named(key[0], 1, key[1], key[2]))
        t = step_time(cache[key].with_batch(run["batch"]), device, run["precision"], host)
        measured = run.get("step_ms") or run["batch"] / run["samples_per_s"] * 1e3
        rows.append(
            {
                "device": "h100-sxm",
                "run": run["id"],
                "measured_ms": measured,
                "predicted_ms": t.step_s * 1e3,
                "ratio": t.step_s * 1e3 / measured,
                "bound": t.bound,
                "host_ms": t.dispatch_s * 1e3,
            }
        )
    minilm = SpecProfiler(load_spec("examples/conll2003-minilm.yaml"))
    row = advise(minilm, "bf16", [gpu_by_id("h100-sxm")]).gpus[0]
    rows.append(
        {
            "device": "h100-sxm",
            "run": "minilm-ner-hf-trainer (3 epochs)",
            "measured_s": 60.0,
            "predicted_s": row["run_s"],
            "ratio": row["run_s"] / 60.0,
            "bound": row["bound"],
        }
    )
    cpu = cpu_from_calibration(calibration)
    cases = {k: (profile_named(w, 1, s, "fp32"), b) for k, (w, b, s) in CPU_CASES.items()}
    cases["minilm-ner-b16-fp32"] = (minilm("fp32"), 16)
    for run_id, (profile, batch) in cases.items():
        p = profile.with_batch(batch)
        t = step_time(p, cpu, "fp32", host)
        m = cpu_runs[run_id]
        memory = p.memory_at(batch) - (p.memory_start[0] + p.memory_start[1] * batch)
        rows.append(
            {
                "device": "cpu",
                "run": run_id,
                "measured_ms": m["min_ms"],
                "predicted_ms": t.step_s * 1e3,
                "ratio": t.step_s * 1e3 / m["min_ms"],
                "bound": t.bound,
                "host_ms": t.dispatch_s * 1e3,
                "measured_memory_bytes": m["peak_rss_above_start_bytes"],
                "predicted_memory_bytes": memory,
                "memory_ratio": memory / max(m["peak_rss_above_start_bytes"], 1),
            }
        )
    result = {
        "date": "2026-12-01",
        "device": f"{os.cpu_count()}-core {cpu_model()}, shared with other jobs",
        "command": "nice -n 10 .venv/bin/python benchmarks/advise_validation.py",
        "rows": rows,
    }
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(
            r["device"],
            r["run"],
            f"ratio {r['ratio']:.2f}",
            r["bound"],
            f"memory {r['memory_ratio']:.2f}" if "memory_ratio" in r else "",
        )


if __name__ == "__main__":
    main()
