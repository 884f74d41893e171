"""Host time per dispatched op on this CPU: the one CPU-measured constant of advise's model.

A tiny MLP (width 4, so compute is negligible) takes Adam training steps under PyTorch's
eager dispatch; the fastest of many timed steps divided by the ops one step dispatches
(counted by advise's OpRecorder) is the host cost of an op, autograd included.

    nice -n 10 .venv/bin/python benchmarks/advise_calibrate.py
writes benchmarks/results/cpu-2026-11-30-advise-calibrate.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from tensorfab.advise.record import OpRecorder
from tensorfab.files import write_text_atomic

OUT = Path("benchmarks/results/cpu-2026-11-30-advise-calibrate.json")


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(4, 4), nn.ReLU())])
    optimizer = torch.optim.Adam(model.parameters(), foreach=True)
    x, y = torch.randn(2, 4), torch.randn(2, 4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    for _ in range(20):
        step()
    recorder = OpRecorder()
    with recorder:
        step()
    times = []
    for _ in range(500):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    ops = len(recorder.ops)
    result = {
        "device": "2-core AMD EPYC CPU, shared with other jobs",
        "date": "2026-11-30",
        "command": "nice -n 10 .venv/bin/python benchmarks/advise_calibrate.py",
        "torch": torch.__version__,
        "ops_per_step": ops,
        "step_us_min": min(times) * 1e6,
        "step_us_median": sorted(times)[len(times) // 2] * 1e6,
        "host_op_us": min(times) * 1e6 / ops,
    }
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
