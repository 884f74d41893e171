"""``bench compare``: one workload's training epoch on the CPU and on the GPU, and the speed-up.

The timing is ``tensorfab.engine.compare`` (``compare_devices``/``time_epoch``), the same code
``tensorfab demo`` prints its speed-up with: one warm-up epoch, one timed epoch per device,
through the engine. The epoch is bounded (``data.limit_train``) so a CPU finishes it; on a
machine without a GPU the CPU figure is reported alone and the result says the GPU is absent.
"""

from __future__ import annotations

from typing import Any

import torch

from tensorfab.bench.progress import BenchProgress
from tensorfab.bench.workloads import Plan, create_workload
from tensorfab.engine.compare import available_devices, compare_devices
from tensorfab.spec import parse_spec

# Training examples per timed epoch: a full MNIST epoch, a CPU-sized slice of CoNLL.
EPOCH_SAMPLES = {"lenet-mnist": (512, 60_000), "bert-base-ner": (16, 256), "minilm-ner": (32, 2048)}


def compare_spec(workload: Any, quick: bool) -> Any:
    """The engine's job for the workload, device-neutral (precision auto, no compile)."""
    raw = workload.engine_spec(workload.batch_sizes[0], None, False)
    quick_n, full_n = EPOCH_SAMPLES[workload.name]
    raw["data"]["limit_train"] = min(quick_n if quick else full_n, len(workload.splits.train))
    raw["data"]["limit_test"] = 64
    raw["name"] = workload.name
    return parse_spec(raw)


def bench_compare(names: list[str], plan: Plan, progress: BenchProgress) -> dict[str, Any]:
    """CPU vs GPU epoch time per workload; ``gpu`` says "absent" on a CPU-only machine."""
    devices = available_devices()
    rows = []
    for name in names:
        workload = create_workload(name, plan)
        try:
            spec = compare_spec(workload, plan.quick)
            with progress.stage(f"{name} epoch on {', '.join(devices)}", 1) as advance:
                result = compare_devices(spec, devices)
                advance()
        finally:
            workload.close()
        result["workload"] = name
        result["spec"] = spec.model_dump(mode="json", exclude={"output"})
        result["data"] = workload.data
        result["speedup"] = result["devices"][-1]["speedup"] if len(devices) > 1 else None
        rows.append(result)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "absent"
    return {"kind": "compare", "plan": {"quick": plan.quick}, "gpu": gpu, "results": rows}
