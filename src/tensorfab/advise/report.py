"""The advice as people read it: a markdown table, a PNG, and the calibration file.

``--calibrate FILE`` reads a ``tensorfab bench micro`` result (its matmul peaks and copy
bandwidth replace the datasheet figures of the catalogue GPU its device name matches), a
``tensorfab bench train`` result measured on a catalogue GPU (its runs correct that GPU's
host or device time: advise/measured.py), or an advise calibration object
``{"host_op_us": .., "gpus": {id: {"tflops": {..}, "bandwidth_gb_s": .., "price_usd_h": ..,
"host_scale": .., "device_scale": ..}}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorfab.advise.advise import Advice
from tensorfab.advise.calibration import check_raw, from_micro, shown
from tensorfab.advise.measured import calibration_from_bench
from tensorfab.errors import TensorfabError
from tensorfab.metrics.plots import plot_stacked_bars


def _cell(value: Any, fmt: str, none: str = "n/a") -> str:
    return none if value is None else format(value, fmt)


def markdown(advice: Advice) -> str:
    """One row per GPU; a refused GPU shows its reason instead of figures."""
    lines = [
        f"advise: {advice.workload} ({advice.kind})",
        "",
        "| gpu | precision | batch | step ms | run s | bound | memory GB | fits | max batch "
        "| energy kJ | cost $ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in advice.gpus:
        if r.get("step_ms") is None:
            lines.append(
                f"| {r['id']} | {r['precision']} | {r['batch_size']} | refused: "
                f"{r['refused']} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['id']} | {r['precision']} | {r['batch_size']} | {r['step_ms']:.2f} "
            f"| {r['run_s']:.1f} | {r['bound']} | {r['memory_gb']:.2f} | "
            f"{'yes' if r['fits'] else 'NO'} | {_cell(r['largest_batch'], 'd', 'no limit')} | "
            f"{_cell(r['energy_kj'], '.2f')} | {r['cost_usd']:.4f} |"
        )
    lines += ["", *(f"fastest: {', '.join(advice.ranking['time'][:3])}" for _ in [0])]
    lines += [f"cheapest: {', '.join(advice.ranking['cost'][:3])}"]
    lines += [f"least energy: {', '.join(advice.ranking['energy'][:3])}", "", "assumptions:"]
    lines += [f"- {a}" for a in advice.assumptions + advice.notes]
    refused = [r for r in advice.gpus if r["refused"]]
    lines += [f"refused {r['id']}: {r['refused']}" for r in refused]
    return "\n".join(lines) + "\n"


def plot(advice: Advice, path: Path) -> Path | None:
    """Predicted step time per GPU, split into its parts (PNG); None when every GPU was
    refused (nothing to draw)."""
    rows = [r for r in advice.gpus if r.get("parts_ms")]
    if not rows:
        return None
    parts = ("compute", "memory", "kernel_latency", "host_dispatch", "host_input")
    return plot_stacked_bars(
        [r["id"] for r in rows],
        {part: [r["parts_ms"][part] for r in rows] for part in parts},
        path,
        ylabel="ms per step, by part",
        title=f"tensorfab advise: {advice.workload}",
    )


def load_calibration(path: Path) -> dict[str, Any]:
    """A checked calibration object from ``path`` (see the module docstring and
    advise/calibration.py: every value is checked there)."""
    where = f"--calibrate {path}"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TensorfabError(f"{where}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise TensorfabError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TensorfabError(f"{where}: expected a JSON object, not {shown(data)}")
    if data.get("kind") == "micro":
        return from_micro(data, where)
    if data.get("kind") == "train":
        return calibration_from_bench(data, where)
    return check_raw(data, where)
