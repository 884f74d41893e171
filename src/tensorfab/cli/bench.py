"""``tensorfab bench micro|train|infer|compare``: measure, compare with the tutorials, save."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from tensorfab.bench import (
    WORKLOAD_NAMES,
    BenchProgress,
    Plan,
    bench_compare,
    bench_infer,
    bench_micro,
    bench_train,
    default_out_path,
    environment,
    save_results,
)
from tensorfab.bench.report import markdown
from tensorfab.bench.workloads import has_mnist
from tensorfab.errors import TensorfabError

EXAMPLE = """\
tensorfab bench micro
tensorfab bench train --workloads lenet-mnist --device cpu
tensorfab bench train --quick --json --out /tmp/bench.json
tensorfab bench train --workloads minilm-ner --device cpu --profile /tmp/profile
tensorfab bench infer --workloads minilm-ner
tensorfab bench infer --model runs/ner --data ../shared/data/conll2003/valid.txt --device cpu
tensorfab bench compare --workloads lenet-mnist"""

SUBCOMMANDS = {
    "micro": (
        "matmul TFLOP/s per precision and copy bandwidths",
        "tensorfab bench micro --device cuda\ntensorfab bench micro --quick --json",
    ),
    "train": (
        "training throughput, step times, memory, MFU: baseline vs tensorfab",
        "tensorfab bench train --workloads lenet-mnist,minilm-ner\n"
        "tensorfab bench train --quick --device cpu --json --out /tmp/train.json",
    ),
    "infer": (
        "batch-1 latency and large-batch throughput: baseline vs tensorfab; with --model, "
        "every inference variant of a trained model (speed and metric) vs PyTorch fp32 eager",
        "tensorfab bench infer --workloads minilm-ner --device cpu\n"
        "tensorfab bench infer --model runs/ner --data ../shared/data/conll2003/valid.txt "
        "--variants torch-auto,onnx-int8-dynamic --repeats 3 --device cpu",
    ),
    "compare": (
        "one training epoch on CPU and GPU, and the speed-up",
        "tensorfab bench compare --workloads lenet-mnist,minilm-ner",
    ),
    "time-to-accuracy": (
        "wall clock from process start to valid entity F1 >= target: tensorfab vs the "
        "Hugging Face Trainer (minilm-l6, CoNLL-2003; ~40 min+ a side on 2 CPU cores)",
        "tensorfab bench time-to-accuracy --device cpu\n"
        "tensorfab bench time-to-accuracy --side-by-side --set train.lr=2e-4\n"
        "tensorfab bench time-to-accuracy --limit-train 2000 --limit-eval 500 --target 0.7",
    ),
}
DEFAULT_DATA_DIR = Path("../shared/data")
DEFAULT_WORKLOADS = {"train": WORKLOAD_NAMES, "infer": WORKLOAD_NAMES, "compare": ("lenet-mnist",)}


def configure(parser: argparse.ArgumentParser) -> None:
    """One sub-command per suite, each with the common options."""
    sub = parser.add_subparsers(dest="bench_command", metavar="SUITE", required=True)
    for name, (help_text, example) in SUBCOMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="example:\n  " + example.replace("\n", "\n  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "time-to-accuracy":
            _tta_options(cmd)
        else:
            _common(cmd, workloads=name != "micro")
        if name == "infer":
            _variant_options(cmd)


def _variant_options(cmd: argparse.ArgumentParser) -> None:
    from tensorfab.bench.infer_variants import DEFAULT_ROWS, ROWS

    cmd.add_argument(
        "--model",
        help="a trained run or model package: time every --variants row on its held-out "
        "data instead of the workloads (default: off)",
    )
    cmd.add_argument("--data", help="with --model: held-out file (default: its own test split)")
    cmd.add_argument(
        "--variants",
        help=f"with --model: rows from {', '.join(ROWS)} (default: {','.join(DEFAULT_ROWS)}; "
        "eager-fp32, the baseline, always runs)",
    )
    # defaults applied in _variants: None keeps them out of a workload run's recorded command
    cmd.add_argument("--repeats", type=int, help="with --model: passes, median (default 3)")
    cmd.add_argument("--batch", type=int, help="with --model: batch size (default 64)")
    cmd.add_argument("--samples", type=int, help="with --model: first N examples (default all)")


def _variants(args: argparse.Namespace, device: torch.device, progress: BenchProgress) -> dict:
    from tensorfab.bench.infer_variants import VariantPlan, bench_infer_variants, parse_rows

    for name in ("repeats", "batch", "samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TensorfabError(f"--{name} must be at least 1, not {value}")
    repeats = 3 if args.repeats is None else args.repeats
    batch = 64 if args.batch is None else args.batch
    samples = 10**9 if args.samples is None else args.samples  # all
    plan = VariantPlan(
        args.model, args.data, parse_rows(args.variants), repeats, batch, samples, device.type
    )
    return bench_infer_variants(plan, progress)


def _tta_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--device", choices=("cpu",), default="cpu", help="default: cpu")
    cmd.add_argument("--sides", default="tensorfab,hf-trainer", help="default: both, in order")
    cmd.add_argument("--target", type=float, default=0.90, help="valid entity F1 (default 0.90)")
    cmd.add_argument("--evals-per-epoch", type=int, default=4, help="default 4 (quarter epochs)")
    cmd.add_argument("--max-epochs", type=int, default=3, help="default 3")
    cmd.add_argument("--limit-train", type=int, help="a scaled run: first N train sentences")
    cmd.add_argument("--limit-eval", type=int, help="first N valid sentences (default: all)")
    cmd.add_argument("--data-dir", help=f"folder holding conll2003/ (default {DEFAULT_DATA_DIR})")
    cmd.add_argument(
        "--out",
        help="result JSON (default: benchmarks/results/<device>-<date>-bench-"
        "time-to-accuracy.json)",
    )
    cmd.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override tensorfab's side only, as in train (e.g. train.lr=2e-4); repeatable",
    )  # fmt: skip
    cmd.add_argument(
        "--side-by-side", action="store_true",
        help="run both sides at once, each pinned to its own core with one thread "
        "(default: in turn, all cores each)",
    )  # fmt: skip
    cmd.add_argument("--note", help="recorded with the results")
    cmd.add_argument("--json", action="store_true", help="print only the result JSON")


def _tta(args: argparse.Namespace, progress: BenchProgress) -> dict[str, Any]:
    from tensorfab.bench.time_to_accuracy import SIDES, TtaPlan, bench_time_to_accuracy

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in SIDES]
    if unknown or not sides:
        raise TensorfabError(f"--sides: choose from {', '.join(SIDES)}, not {args.sides!r}")
    if not 0 < args.target <= 1 or args.evals_per_epoch < 1 or args.max_epochs < 1:
        raise TensorfabError("--target must be in (0, 1], --evals-per-epoch and --max-epochs >= 1")
    data_dir = Path(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR
    if not (data_dir / "conll2003" / "train.txt").is_file():
        raise TensorfabError(f"--data-dir {data_dir}: no conll2003/train.txt there")
    plan = TtaPlan(
        data_dir, args.target, args.evals_per_epoch, args.max_epochs,
        args.limit_train, args.limit_eval, tuple(args.sets), args.side_by_side,
    )  # fmt: skip
    return bench_time_to_accuracy(sides, plan)


def _common(cmd: argparse.ArgumentParser, workloads: bool) -> None:
    cmd.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    cmd.add_argument("--quick", action="store_true", help="a few seconds per workload")
    if workloads:
        cmd.add_argument("--workloads", help=f"comma-separated from {', '.join(WORKLOAD_NAMES)}")
        cmd.add_argument("--steps", type=int, help="timed steps (default 100, quick 3)")
        cmd.add_argument("--warmup", type=int, help="untimed steps first (default 10, quick 1)")
        cmd.add_argument(
            "--data-dir",
            help=f"folder holding mnist/ and conll2003/ (default {DEFAULT_DATA_DIR}; "
            "lenet-mnist runs on synthetic images only if that has no MNIST)",
        )
        cmd.add_argument(
            "--ablate",
            action="store_true",
            help="train: also run tensorfab with each speed setting off, to show what it buys",
        )
        cmd.add_argument(
            "--compile",
            choices=("auto", "on", "off"),
            default="auto",
            help="torch.compile on the tensorfab side (auto: GPU, fixed shapes, not --quick)",
        )
        cmd.add_argument(
            "--profile",
            metavar="DIR",
            help="train: torch.profiler on the tensorfab side's steps 4-8, trace.json and "
            "top_ops.md per workload and batch in DIR (the profiler slows those steps; "
            "default: off)",
        )
    cmd.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: torch's; 1 for --quick on a CPU)",
    )
    cmd.add_argument(
        "--out",
        help="result JSON, replaced if it exists (default: a new "
        "benchmarks/results/<device>-<date>-bench-<suite>[-quick][-N].json)",
    )
    cmd.add_argument("--note", help="recorded with the results, e.g. that the machine was shared")
    cmd.add_argument("--json", action="store_true", help="print only the result JSON")


def _device(requested: str | None) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TensorfabError(f"--device cuda: no CUDA GPU is available (torch {torch.__version__})")
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def _set_threads(args: argparse.Namespace, device: torch.device) -> None:
    """``--threads``; a quick CPU run defaults to one thread.

    A quick run is a smoke test, not a figure to report, and on a CPU shared with other
    jobs two OpenMP threads that wait on each other run many times slower than one
    (seen: 103 s instead of 29 s for ``bench train --quick`` on a busy 2-core machine).
    The count used is recorded in the result (``environment.torch_threads``).
    """
    threads = args.threads
    if threads is None and args.quick and device.type == "cpu":
        threads = 1
    if threads is None:
        return
    if threads < 1:
        raise TensorfabError(f"--threads must be >= 1, not {threads}")
    torch.set_num_threads(threads)


def _workloads(args: argparse.Namespace) -> list[str]:
    given = getattr(args, "workloads", None)
    names = [w.strip() for w in given.split(",") if w.strip()] if given else None
    names = names or list(DEFAULT_WORKLOADS[args.bench_command])
    unknown = [n for n in names if n not in WORKLOAD_NAMES]
    if unknown:
        raise TensorfabError(
            f"--workloads: unknown {', '.join(unknown)}; choose from {', '.join(WORKLOAD_NAMES)}"
        )
    return names


def _plan(args: argparse.Namespace, device: torch.device) -> Plan:
    steps = args.steps if args.steps is not None else (3 if args.quick else 100)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 10)
    if steps < 1 or warmup < 0:
        raise TensorfabError(f"--steps must be >= 1 and --warmup >= 0, not {steps} and {warmup}")
    data_dir = _data_dir(args)
    return Plan(
        device,
        args.quick,
        warmup,
        steps,
        data_dir or DEFAULT_DATA_DIR,
        args.compile,
        args.ablate,
        synthetic_ok=data_dir is None,
        profile_dir=Path(args.profile) if args.profile else None,
    )


def _data_dir(args: argparse.Namespace) -> Path | None:
    """The --data-dir given (it must exist), or None for the default.

    Only the default may be missing, and then lenet-mnist's synthetic stand-in is said in
    a ``note:`` line: a typo in a named folder must not turn into made-up numbers.
    """
    if args.data_dir is not None:
        given = Path(args.data_dir)
        if not given.is_dir():
            raise TensorfabError(f"--data-dir {given}: no such folder")
        return given
    if "lenet-mnist" in _workloads(args) and not has_mnist(DEFAULT_DATA_DIR):
        print(
            f"note: no MNIST under {DEFAULT_DATA_DIR} (the default --data-dir); lenet-mnist "
            "runs on synthetic images of MNIST's shape",
            file=sys.stderr,
        )
    return None


def run(args: argparse.Namespace) -> int:
    """Run the suite, save JSON + table (+ chart), print the table or the JSON."""
    device = _device(args.device)
    tta = args.bench_command == "time-to-accuracy"
    variants = getattr(args, "model", None) is not None
    timed = args.bench_command != "micro" and not tta and not variants
    plan = _plan(args, device) if timed else None
    if not tta:
        _set_threads(args, device)
    progress = BenchProgress(quiet=args.json)
    env = environment(device, _command(args), args.note)
    if tta:
        result = _tta(args, progress)
    elif variants:
        result = _variants(args, device, progress)
    elif plan is None:
        result = bench_micro(device, args.quick, progress)
    else:
        suites = {"train": bench_train, "infer": bench_infer, "compare": bench_compare}
        result = suites[args.bench_command](_workloads(args), plan, progress)
    result = {"kind": result["kind"], "environment": env, **result}
    quick = getattr(args, "quick", False)
    out = Path(args.out or default_out_path(device, result["kind"], env["date"], quick))
    save_results(result, out)
    if args.json:
        print(json.dumps(result, indent=2))
        if not args.out:  # the default name may carry a -N suffix: say which file it is
            print(f"json: {out}", file=sys.stderr)
    else:
        _print(result)  # names every file written
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, from the parsed options."""
    parts = ["tensorfab", "bench", args.bench_command]
    for key, value in vars(args).items():
        if key in ("command", "bench_command", "_run") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def _print(result: dict[str, Any]) -> None:
    print(markdown(result))
    if result["kind"] == "compare" and result["gpu"] == "absent":
        print("No CUDA GPU on this machine: the CPU figure only, no speed-up to report.")
    for name, path in result["files"].items():
        print(f"{name}: {path}", file=sys.stderr)
