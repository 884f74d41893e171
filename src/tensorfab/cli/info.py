"""``tensorfab info``: print what this machine has (CPU, memory, torch, GPUs)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

EXAMPLE = """
tensorfab info
tensorfab info --json > hardware.json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (data only) to stdout")


def run(args: argparse.Namespace) -> int:
    from tensorfab.hardware import collect_info  # torch: imported when run, not for --help

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    console = Console()
    console.print(_system_table(info))
    if info["gpus"]:
        console.print(_gpu_table(info["gpus"]))
    else:
        console.print(
            "GPUs: none visible" + ("" if info["torch_cuda"] else " (CPU build of torch)")
        )
    return 0


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _system_table(info: dict[str, Any]) -> Table:
    cpu, mem = info["cpu"], info["memory"]
    table = Table(title="tensorfab info", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    cores = f"{cpu['logical_cores']} logical, {cpu['physical_cores'] or '?'} physical"
    rows = [
        ("OS", info["os"]),
        ("Python", info["python"]),
        ("torch", f"{info['torch']} (CUDA {info['torch_cuda'] or 'none'})"),
        ("CPU", f"{cpu['model']} ({cores})"),
        ("CPU precisions", ", ".join(cpu["precisions"])),
        ("Memory", f"{_gib(mem['available_bytes'])} free of {_gib(mem['total_bytes'])}"),
        ("Apple MPS", "available" if info["mps_available"] else "no"),
        ("NVIDIA driver", info["driver_version"] or "n/a"),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _reading(value: float | int | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _gpu_table(gpus: list[dict[str, Any]]) -> Table:
    table = Table(title="GPUs")
    for name in ("#", "name", "memory", "sm", "SMs", "precisions", "datasheet TFLOP/s"):
        table.add_column(name)
    for name in ("util", "mem used", "power"):
        table.add_column(name, justify="right")
    for g in gpus:
        used = g["memory_used_bytes"]
        peaks = ", ".join(f"{p} {v:g}" for p, v in g["datasheet_peak_tflops"].items()) or "n/a"
        table.add_row(
            str(g["index"]),
            g["name"],
            _gib(g["total_memory_bytes"]),
            g["compute_capability"],
            str(g["sm_count"]),
            ", ".join(g["precisions"]),
            peaks,
            _reading(g["utilization_pct"], "{}%"),
            _reading(None if used is None else used / 2**30, "{:.1f} GiB"),
            _reading(g["power_w"], "{:.0f} W"),
        )
    return table
