"""``tensorfab export RUN_DIR|MODEL_DIR``: ONNX and PyTorch variants + parity report, into a
repository."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.optimize import export_package, parity_report
from tensorfab.optimize.export import DEFAULT_VARIANTS, VARIANTS, ExportedModel
from tensorfab.optimize.latency import heldout_lengths, latency_report
from tensorfab.optimize.report import export_markdown
from tensorfab.package import LoadedPackage, load_package, resolve_model_dir

HELP = (
    "export a trained model to ONNX (fp32, int8-dynamic, int8-static) and, on request, "
    "PyTorch GPU variants, with a parity report"
)
EXAMPLE = """\
tensorfab export runs/digits-lenet --repo repo
tensorfab export runs/conll2003-minilm --repo repo --name ner --calibration-samples 512 --json
tensorfab export runs/sst2-minilm --repo repo --variants fp32,torch-bf16 --latency
tensorfab export runs/sst2-minilm --repo repo --variants fp32,torch-fp16,torch-cudagraphs \\
    --device cuda --latency"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument("--repo", default="repo", help="serving repository folder")
    parser.add_argument("--name", help="model name in the repository (default: the run's name)")
    parser.add_argument("--version", type=int, default=1, help="version folder to write")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (torch-fp16 and torch-cudagraphs "
        "need a CUDA GPU to be checked; elsewhere they are written and marked skipped)",
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=256,
        help="training examples that set int8-static's activation ranges",
    )
    parser.add_argument("--data", help="held-out data for parity (default: the test split)")
    parser.add_argument("--samples", type=int, default=512, help="examples for parity")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed metric drop")
    parser.add_argument(
        "--device", default="cpu", help="where parity and latency run the variants: cpu|cuda|auto"
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also time batch-1 latency and throughput per runtime on --device",
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        help="time text models at this fixed length (default: the held-out sentences' lengths)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    model_dir = resolve_model_dir(args.model)
    name = args.name or (model_dir.parent.name if model_dir.name == "model" else model_dir.name)
    pkg = load_package(model_dir)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    exported = export_package(
        pkg, Path(args.repo), name, args.version, variants, args.calibration_samples
    )
    report = parity_report(
        pkg,
        exported,
        data_path=args.data,
        max_samples=args.samples,
        tolerance=args.tolerance,
        device=args.device,
    )
    report["files"] = {e.variant: str(e.path) for e in exported}
    if args.latency:
        report["latency"] = _latency(args, pkg, exported)
    folder = Path(args.repo) / name
    (folder / "export-report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "export-report.md").write_text(export_markdown(report, f"{model_dir} as {name}"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0 if all(r["passed"] is not False for r in report["variants"].values()) else 1


def _latency(args: argparse.Namespace, pkg: LoadedPackage, exported: list[ExportedModel]) -> dict:
    """Text models are timed on the held-out sentences' lengths unless --seq-len is given."""
    lengths = None
    if pkg.meta["input"]["kind"] == "text" and args.seq_len is None:
        lengths = heldout_lengths(pkg, args.data, args.samples)
    return latency_report(
        pkg,
        exported,
        seq_len=args.seq_len or 32,
        lengths=lengths,
        device=args.device,
    )


def _print(report: dict) -> None:
    metric = report["metric"]
    for variant, row in report["variants"].items():
        if "skipped" in row:
            print(f"{variant:>16}: not checked: {row['skipped']}")
            continue
        status = "ok" if row["passed"] else "FAILED (metric drop over tolerance)"
        print(
            f"{variant:>16}: {metric} {row[metric]:.4f} (delta {row['delta']:+.4f}), "
            f"agreement {row['agreement']:.4f}, max |diff| {row['max_abs_diff']:.2e}  {status}"
        )
        for note in row.get("notes", []):
            print(f"{'':>16}  note: {note}")
    latency = report.get("latency", {})
    if latency:
        print(f"latency on {latency['device']}, {latency['threads']} threads:")
    for runtime, row in latency.get("runtimes", {}).items():
        if "skipped" in row:
            print(f"{runtime:>18}: not timed: {row['skipped']}")
            continue
        print(
            f"{runtime:>18}: batch-1 p50 {row['batch1_p50_ms']:.2f} ms, "
            f"p99 {row['batch1_p99_ms']:.2f} ms, best {row['best_throughput_per_s']:,.0f}/s "
            f"at batch {row['best_batch']} ({row['speedup_vs_torch_fp32']:.2f}x torch fp32)"
            + (f", {row['best_tokens_per_s']:,.0f} tokens/s" if "best_tokens_per_s" in row else "")
        )
