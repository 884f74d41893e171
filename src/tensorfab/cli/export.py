"""``tensorfab export RUN_DIR|MODEL_DIR``: ONNX and PyTorch variants + parity report, into a
repository; or, with ``--format hf OUT``, a text model as a Hugging Face model directory."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.hardware import resolve_device
from tensorfab.optimize import export_package, parity_report
from tensorfab.optimize.export import DEFAULT_VARIANTS, ExportedModel, check_variants
from tensorfab.optimize.latency import latency_report
from tensorfab.optimize.parity import heldout_data
from tensorfab.optimize.precision import (
    AUTO_VARIANT,
    choose_inference_precision,
    resolve_auto_variant,
)
from tensorfab.optimize.report import export_markdown
from tensorfab.package import LoadedPackage, load_package, resolve_model_dir
from tensorfab.package.repository import (
    VARIANTS,
    check_model_name,
    check_version_number,
    report_path,
    resolve_version,
)

DEVICE = re.compile(r"cpu|auto|cuda(:[0-9]+)?")
EXAMPLE = """\
tensorfab export runs/digits-lenet --repo repo
tensorfab export runs/conll2003-minilm --repo repo --name ner --calibration-samples 512 --json
tensorfab export runs/sst2-minilm --repo repo --variants fp32,torch-bf16 --latency
tensorfab export runs/conll2003-minilm --repo repo --variants int8-dynamic,torch-auto --latency
tensorfab export runs/sst2-minilm --repo repo --variants fp32,torch-fp16,torch-cudagraphs \\
    --device cuda --latency
tensorfab export runs/conll2003-minilm --format hf hf/conll2003-minilm   # transformers loads it"""
FORMATS = ("repo", "hf")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s MODEL [--repo REPO] [--variants V] [options]\n"
        "       %(prog)s MODEL --format hf OUT [--json]"
    )
    # MODEL [OUT] as one list, and OUT also after --format: argparse fills each positional
    # once, so an optional OUT after "--format hf" would be refused as unrecognized
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="MODEL",
        help="run directory or model package directory; with --format hf, then the Hugging "
        "Face model directory to write (new or empty)",
    )
    parser.add_argument(
        "--format",
        nargs="+",
        default=["repo"],
        metavar=("{repo,hf}", "OUT"),
        help="repo: ONNX/PyTorch variants into a serving repository with a parity report; "
        "hf: a text model as a Hugging Face model directory (AutoModelFor*, pipeline), "
        "written to OUT (default: repo)",
    )
    parser.add_argument("--repo", default=None, help="serving repository folder (default: repo)")
    parser.add_argument(
        "--name",
        help="model name in the repository: letters, digits, _ - . (default: the run's name)",
    )
    parser.add_argument(
        "--version",
        type=int,
        help="version folder to write (default: the next free one; an existing one is refused)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}, {AUTO_VARIANT} (torch-fp16 and "
        "torch-cudagraphs need a CUDA GPU to be checked; elsewhere they are written and marked "
        f"skipped; {AUTO_VARIANT}: the torch variant of the precision auto chooses on --device, "
        "measured; the choice and why are in the report, as with --latency) "
        f"(default: {','.join(DEFAULT_VARIANTS)})",
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
    parser.add_argument(
        "--threads",
        type=int,
        help="--latency: CPU threads for torch and onnxruntime alike (default: torch's count; "
        "on a shared machine 1 gives figures that repeat)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


DEFAULT_REPO = "repo"


def run(args: argparse.Namespace) -> int:
    """Check every input, export, then score and time what was written.

    The held-out data, calibration data, variants, name and version are all read or
    checked before the first file is written, so a mistake leaves the repository as it was.
    """
    _split_paths(args)
    if args.format == "hf":
        return _run_hf(args)
    if args.out is not None:
        raise TensorfabError(
            f"export: OUT ({args.out}) is only for --format hf; a repository export "
            "writes into --repo"
        )
    _check_numbers(args)
    model_dir = resolve_model_dir(args.model)
    name = _model_name(args, model_dir)
    repo = Path(args.repo or DEFAULT_REPO)
    pkg = load_package(model_dir)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = sorted(set(variants) - {*VARIANTS, AUTO_VARIANT})
    if unknown:  # auto is resolved before the variants are checked: name it among the choices
        raise TensorfabError(
            f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}, {AUTO_VARIANT}"
        )
    choice = None
    if args.latency or AUTO_VARIANT in variants:  # what auto is, when speed is the question
        choice = choose_inference_precision(pkg, args.device)
        variants = resolve_auto_variant(variants, choice)
    check_variants(variants, args.calibration_samples)
    heldout = heldout_data(pkg, args.data, args.samples)
    version = resolve_version(repo, name, variants, args.version)
    exported = export_package(pkg, repo, name, version, variants, args.calibration_samples)
    report = parity_report(
        pkg, exported, heldout=heldout, tolerance=args.tolerance, device=args.device
    )
    report["version"] = version
    if choice is not None:
        report["inference_precision"] = choice.to_dict()
    report["files"] = {e.variant: str(e.path) for e in exported}
    if args.latency:
        report["latency"] = _latency(args, pkg, exported, heldout[0])
    _write_report(report, repo, name, version, f"{model_dir} as {name} version {version}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
        print(f"report: {report_path(repo, name, version)}")
    return 0 if all(r["passed"] is not False for r in report["variants"].values()) else 1


def _split_paths(args: argparse.Namespace) -> None:
    """MODEL [OUT] and --format F [OUT] -> ``args.model``, ``args.format``, ``args.out``."""
    paths = [*args.paths, *args.format[1:]]
    if args.format[0] not in FORMATS:
        raise TensorfabError(f"--format: must be {' or '.join(FORMATS)}, not {args.format[0]!r}")
    if len(paths) > 2:
        raise TensorfabError(f"export: expected MODEL [OUT], got {len(paths)} paths")
    args.format, args.model, args.out = args.format[0], paths[0], (paths[1:] or [None])[0]


def _run_hf(args: argparse.Namespace) -> int:
    """``--format hf OUT``: the package's task writes the directory, or refuses in one line."""
    from tensorfab.optimize.hf import check_hf_target, export_hf

    if args.out is None:
        raise TensorfabError("export --format hf: give the directory to write (OUT)")
    given = [f for f, on in (("--repo", args.repo is not None), ("--latency", args.latency)) if on]
    if given:
        verb = "do" if len(given) > 1 else "does"
        raise TensorfabError(
            f"export --format hf: {' and '.join(given)} {verb} not apply (a repository "
            "export's options); leave them out"
        )
    check_hf_target(Path(args.out))
    model_dir = resolve_model_dir(args.model)
    files = export_hf(load_package(model_dir), args.out)
    if args.json:
        print(
            json.dumps({"format": "hf", "model": str(model_dir), "out": args.out, "files": files})
        )
    else:
        print(f"{model_dir} -> {args.out} (Hugging Face model directory: {', '.join(files)})")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options and --device, checked before any work is done or written."""
    if args.samples < 1:
        raise TensorfabError(f"--samples must be at least 1, not {args.samples}")
    if not args.tolerance >= 0:  # NaN fails too
        raise TensorfabError(f"--tolerance must be 0 or more, not {args.tolerance}")
    if args.threads is not None and args.threads < 1:
        raise TensorfabError(f"--threads must be at least 1, not {args.threads}")
    if args.seq_len is not None and args.seq_len < 1:
        raise TensorfabError(f"--seq-len must be at least 1, not {args.seq_len}")
    if args.version is not None:
        check_version_number(args.version)
    if not DEVICE.fullmatch(args.device):
        raise TensorfabError(f"--device: must be cpu, cuda, cuda:N or auto, not {args.device!r}")
    if args.latency:  # parity falls back to the CPU with a note; timing a GPU needs one
        resolve_device(args.device, "--device")


def _model_name(args: argparse.Namespace, model_dir: Path) -> str:
    """--name, else the run's folder name; either must be a plain repository model name."""
    if args.name is not None:
        check_model_name(args.name)
        return args.name
    name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    check_model_name(name, "the run folder's name (give --name)")
    return name


def _write_report(report: dict, repo: Path, name: str, version: int, title: str) -> None:
    """One JSON and one markdown report per exported version: earlier ones stay."""
    json_path = report_path(repo, name, version)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(report_path(repo, name, version, ".md"), export_markdown(report, title))


def _latency(
    args: argparse.Namespace, pkg: LoadedPackage, exported: list[ExportedModel], data: Any
) -> dict:
    """Sequence models are timed on the held-out examples' lengths unless --seq-len is given."""
    lengths = pkg.task.input_lengths(data) if args.seq_len is None else None
    return latency_report(
        pkg,
        exported,
        seq_len=args.seq_len or 32,
        lengths=lengths,
        device=args.device,
        threads=args.threads,
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
    choice = report.get("inference_precision")
    if choice:
        print(f"inference precision (auto): {choice['precision']}: {choice['reason']}")
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
