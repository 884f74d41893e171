"""Where bench results go: a JSON file that says how it was measured, a markdown table, a chart.

Every result records the device, torch version, date, the command line and the settings
of each side, so a number in the README can be traced back to how it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

import tensorfab
from tensorfab.files import atomic_path, write_text_atomic
from tensorfab.hardware import cpu_model, device_name, driver_version, physical_cores
from tensorfab.metrics import markdown_table

RESULTS_DIR = Path("benchmarks") / "results"


def environment(device: torch.device, command: str, note: str | None) -> dict[str, Any]:
    """The facts a reader needs to weigh the numbers: what ran where, when, how."""
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "cpu_cores": physical_cores(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "driver_version": driver_version() if device.type == "cuda" else None,
        "tensorfab_version": tensorfab.__version__,
        "python": platform.python_version(),
        "date": now.date().isoformat(),
        "timestamp": now.isoformat(timespec="seconds"),
        "command": command,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": load_average(),
        "note": note or "",
    }


def load_average() -> float | None:
    """The 1-minute load average: above the core count, other work shared the CPU."""
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this system
        return None


def default_out_path(device: torch.device, kind: str, date: str, quick: bool = False) -> Path:
    """``benchmarks/results/<device>-<date>-bench-<kind>[-quick][-N].json``, a file not yet there.

    ``-quick`` keeps smoke-test numbers apart from real ones, and ``-2``, ``-3``... keep a
    second run of the day from replacing results that may already be committed.
    """
    stem = f"{device.type}-{date}-bench-{kind}" + ("-quick" if quick else "")
    return unused_path(RESULTS_DIR / f"{stem}.json")


def unused_path(path: Path) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``... before its suffix, whichever is free along
    with the table and chart written beside it."""
    candidate, n = path, 1
    while any(candidate.with_suffix(s).exists() for s in (".json", ".md", ".png")):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def save_results(result: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the JSON, and for train/infer the markdown table and PNG chart beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out)}
    table = markdown(result)
    if table:
        md = out.with_suffix(".md")
        write_text_atomic(md, table)
        files["markdown"] = str(md)
    if result.get("kind") in ("train", "infer") and result.get("results"):
        png = out.with_suffix(".png")
        bar_chart(result, png)
        files["chart"] = str(png)
    result["files"] = files
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return files


def fmt(value: Any, spec: str = ".3g", scale: float = 1.0) -> str:
    """A number for a table; "n/a" for a missing one."""
    if value is None:
        return "n/a"
    return format(value * scale, spec)


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table (what the CLI prints and writes beside the JSON)."""
    kind = result.get("kind")
    if kind == "train":
        return _train_table(result)
    if kind == "infer":
        return _infer_table(result)
    if kind == "micro":
        return _micro_table(result)
    if kind == "compare":
        return _compare_table(result)
    if kind == "time-to-accuracy":
        return _tta_table(result)
    if kind == "infer-variants":
        return _variants_table(result)
    return ""


def _tta_table(result: dict[str, Any]) -> str:
    """Per side: its precision, reached or not, the wall clock to the target, evaluations,
    best F1."""
    target = result["plan"]["target"]
    header = ("side", "precision", f"valid F1 >= {target}", "time to target s", "evaluations",
              "best F1")  # fmt: skip
    rows = [
        (side, r.get("runtime", {}).get("precision", "?"), "yes" if r["reached"] else "no",
         fmt(r["time_to_target_s"], ",.1f"), len(r["evaluations"]),
         fmt(max((e["f1"] for e in r["evaluations"]), default=None), ".4f"))
        for side, r in result["sides"].items()
    ]  # fmt: skip
    ratio_line = (
        f"\ntensorfab / Trainer time: {fmt(result['tensorfab_over_hf_trainer_time'], '.2f')}\n"
    )
    return _title(result) + _lines(markdown_table(header, rows, "lllrrr")) + ratio_line


def _title(result: dict[str, Any]) -> str:
    env = result["environment"]
    note = f"\n\nNote: {env['note']}" if env.get("note") else ""
    return (
        f"# tensorfab bench {result['kind']}: {env['device_name']} ({env['device']}), "
        f"{env['date']}\n\n`{env['command']}`, torch {env['torch_version']}{note}\n\n"
    )


def _train_table(result: dict[str, Any]) -> str:
    header = (
        "workload", "batch", "side", "precision", "samples/s", "real tokens/s",
        "step ms median (p10-p90)", "peak memory MB", "MFU", "J/sample", "tensorfab/baseline",
    )  # fmt: skip
    rows = []
    for row in result["results"]:
        sides = [
            s for s in ("baseline", "hf_trainer", "tensorfab") if "step_time_ms" in row.get(s, {})
        ]
        for side in sides:
            r, t = row[side], row[side]["step_time_ms"]
            rows.append((
                row["workload"], row["batch_size"], side, r["precision"],
                f"{r['samples_per_s']:,.1f}", fmt(r["tokens_per_s"], ",.0f"),
                f"{t['median']:.2f} ({t['p10']:.2f}-{t['p90']:.2f})",
                fmt(r["peak_memory_bytes"], ",.0f", 1e-6), fmt(r["mfu"], ".1%"),
                fmt(r["energy_j_per_sample"], ".3g"), _ratio(row, side),
            ))  # fmt: skip
    table = markdown_table(header, rows, "lrllrrlrrrr")
    return _title(result) + _lines(table) + _ablations(result) + _sources(result)


def _ratio(row: dict[str, Any], side: str) -> str:
    """The tensorfab/baseline ratio on the tensorfab row; tensorfab/Trainer (real tokens/s)
    on the Trainer's row."""
    if side == "hf_trainer":
        return "tensorfab " + fmt(row.get("tensorfab_vs_hf_trainer"), ".2f") + "x"
    return fmt(row["ratio"], ".2f") + "x" if side == "tensorfab" else ""


def _lines(table: list[str]) -> str:
    return "\n".join(table) + "\n"


def _ablations(result: dict[str, Any]) -> str:
    """What each tensorfab setting buys: full speed over the speed without it."""
    rows = [
        (row["workload"], row["batch_size"], a["switched_off"], f"{a['samples_per_s']:,.1f}",
         fmt(a["speedup_from_setting"], ".2f") + "x")
        for row in result["results"]
        for a in row.get("ablations", [])
    ]  # fmt: skip
    if not rows:
        return ""
    header = ("workload", "batch", "switched off", "samples/s without it", "what it buys")
    return "\n" + _lines(markdown_table(header, rows, "lrlrr"))


def _sources(result: dict[str, Any]) -> str:
    """One line per workload saying where its data came from (real or synthetic)."""
    seen = {row["workload"]: row["data"] for row in result["results"] if "data" in row}
    lines = [f"- {name}: {data['source']}, {data['path']}" for name, data in seen.items()]
    return "\nData:\n" + "\n".join(lines) + "\n" if lines else ""


def _infer_table(result: dict[str, Any]) -> str:
    header = (
        "workload", "side", "precision", "batch-1 p50 ms", "batch-1 p99 ms",
        "throughput/s (batch)", "tensorfab/baseline",
    )  # fmt: skip
    rows = [
        (row["workload"], side, r["precision"], f"{r['batch1_latency_ms']['p50']:.2f}",
         f"{r['batch1_latency_ms']['p99']:.2f}",
         f"{r['throughput_per_s']:,.1f} ({r['throughput_batch_size']})", _ratio(row, side))
        for row in result["results"]
        for side, r in ((s, row[s]) for s in ("baseline", "tensorfab"))
    ]  # fmt: skip
    return _title(result) + _lines(markdown_table(header, rows, "lllrrrr")) + _sources(result)


def _micro_table(result: dict[str, Any]) -> str:
    rows = [
        (f"matmul {precision} TFLOP/s", fmt(row["tflops"], ".3g"))
        for precision, row in result["matmul"].items()
    ]
    rows += [
        (f"{name} GB/s", fmt(value, ".3g")) for name, value in result["bandwidth_gb_s"].items()
    ]
    return _title(result) + _lines(markdown_table(("measure", "value"), rows, "lr"))


def _compare_table(result: dict[str, Any]) -> str:
    rows = [
        (cmp["workload"], f"{row['device']} ({row['device_name']})", f"{row['epoch_s']:.3f}",
         f"{row['samples_per_s']:,.1f}", f"{row['speedup']:.2f}x")
        for cmp in result["results"]
        for row in cmp["devices"]
    ]  # fmt: skip
    header = ("workload", "device", "epoch s", "samples/s", "speed-up")
    return _title(result) + _lines(markdown_table(header, rows, "llrrr"))


def bar_chart(result: dict[str, Any], path: Path) -> None:
    """Baseline vs tensorfab throughput per workload, log scale, the ratio written on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["results"]
    key = "samples_per_s" if result["kind"] == "train" else "throughput_per_s"
    labels = [
        f"{r['workload']}\nbatch {r.get('batch_size', r['tensorfab'].get('throughput_batch_size'))}"
        for r in rows
    ]
    fig = Figure(figsize=(max(5.0, 2.2 * len(rows)), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(rows))
    base = [r["baseline"][key] for r in rows]
    ours = [r["tensorfab"][key] for r in rows]
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="baseline (tutorial)")
    ax.bar([x + 0.2 for x in xs], ours, width=0.4, label="tensorfab")
    for x, r, y in zip(xs, rows, ours, strict=True):
        ax.annotate(f"{r['ratio']:.2f}x", (x + 0.2, y), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("samples/s" if result["kind"] == "train" else "samples/s (large batch)")
    env = result["environment"]
    ax.set_title(f"bench {result['kind']}: {env['device_name']}, {env['date']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def _variants_table(result: dict[str, Any]) -> str:
    """Per row: median sequences/s (each pass), the speed-up over eager fp32, the metric."""
    metric = result["metric"]
    header = ("row", "median seq/s", "passes seq/s", "vs eager fp32", metric, "delta")
    rows = [
        (name, fmt(r["median_sequences_per_s"], ",.0f"),
         " / ".join(fmt(v, ",.0f") for v in r["sequences_per_s"]),
         f"{fmt(r['speedup_vs_eager_fp32'], '.2f')}x", fmt(r["metric"], ".4f"),
         f"{r['metric_delta']:+.4f}")
        for name, r in result["rows"].items()
    ]  # fmt: skip
    choice = result["inference_precision"]
    lines = [
        f"{result['sequences']} examples of {result['data']}, batch {result['batch_size']}, "
        f"{result['repeats']} passes per row, {result['threads']} threads; best: {result['best']}.",
        f"torch-auto: {choice['precision']} ({choice['reason']}).",
        "",
        *markdown_table(header, rows, "lrrrrr"),
    ]
    return _title(result) + _lines(lines)
