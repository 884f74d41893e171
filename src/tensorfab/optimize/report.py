"""The export report as markdown: a parity table and a trtexec-like latency table.

Written beside ``export-report-<version>.json`` so a person can read what was shipped and
how fast each runtime is without parsing JSON; the numbers are the JSON's, nothing
recomputed.
"""

from __future__ import annotations

from typing import Any

from tensorfab.metrics import markdown_table


def _num(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _parity(report: dict[str, Any]) -> list[str]:
    metric = report["metric"]
    header = (
        "variant", metric, "delta", "agreement", "max abs diff", "mean abs diff", "status"
    )  # fmt: skip
    rows = []
    for variant, row in report["variants"].items():
        if "skipped" in row:
            rows.append((variant, "", "", "", "", "", f"not checked: {row['skipped']}"))
            continue
        status = "ok" if row["passed"] else "FAILED: metric drop over tolerance"
        rows.append((
            variant, f"{row[metric]:.4f}", f"{row['delta']:+.4f}", f"{row['agreement']:.4f}",
            f"{row['max_abs_diff']:.2e}", f"{row['mean_abs_diff']:.2e}", status,
        ))  # fmt: skip
    return [
        f"Parity against PyTorch fp32 ({metric} {report['reference']:.4f}) on {report['n']} "
        f"examples of {report['data']}; tolerance {report['tolerance']}.",
        "",
        *markdown_table(header, rows, "lrrrrrl"),
    ]


def _latency(latency: dict[str, Any]) -> list[str]:
    where = f"{latency['device']}, {latency['threads']} threads"
    mix = "held-out length mix" if latency.get("lengths") else f"seq_len {latency.get('seq_len')}"
    header = (
        "runtime", "batch-1 p50 ms", "batch-1 p99 ms", "best /s (batch)", "tokens/s", "vs torch"
    )  # fmt: skip
    rows = []
    for runtime, row in latency["runtimes"].items():
        if "skipped" in row:
            rows.append((runtime, "", "", "", "", f"not timed: {row['skipped']}"))
            continue
        rows.append((
            runtime, f"{row['batch1_p50_ms']:.2f}", f"{row['batch1_p99_ms']:.2f}",
            f"{row['best_throughput_per_s']:,.0f} ({row['best_batch']})",
            _num(row.get("best_tokens_per_s"), ",.0f"), f"{row['speedup_vs_torch_fp32']:.2f}x",
        ))  # fmt: skip
    return [
        "",
        f"Latency and throughput on {where} ({mix} for text models).",
        "",
        *markdown_table(header, rows, "lrrrrr"),
    ]


def export_markdown(report: dict[str, Any], title: str) -> str:
    """``export-report-<version>.md``: parity, then latency when it was measured."""
    lines = [f"# tensorfab export: {title}", "", *_parity(report)]
    choice = report.get("inference_precision")
    if choice:
        lines += ["", f"Inference precision (auto, torch runtime): {choice['precision']}: "
                  f"{choice['reason']}."]  # fmt: skip
    if report.get("latency"):
        lines += _latency(report["latency"])
    return "\n".join(lines) + "\n"
