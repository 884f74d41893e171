"""``tensorfab demo``: the main job. LeNet on the embedded digits, on the best device.

Needs no network and no download; only where a GPU is present does it also time the same
epoch on CPU and GPU and print the speed-up (a CPU-only machine shows none).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tensorfab.spec import load_spec

EXAMPLE = "tensorfab demo\ntensorfab demo --epochs 5 --json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs to train (default: 15, the demo job's)"
    )
    parser.add_argument("--runs-dir", default="runs", help="where the run directory goes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


# The same job as examples/digits-lenet.yaml (a test keeps them equal), built from the
# spec defaults so the demo does not depend on where the repository is.
DEMO_OVERRIDES = ["name=digits-lenet", "train.epochs=15"]


def run(args: argparse.Namespace) -> int:
    from tensorfab.engine.compare import available_devices, compare_devices  # torch, when run
    from tensorfab.engine.train import train

    overrides = [
        f"output.runs_dir={args.runs_dir}",
        f"output.name=demo-{time.strftime('%Y%m%d-%H%M%S')}",
    ]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    spec = load_spec(None, DEMO_OVERRIDES + overrides)
    result = train(spec, quiet=args.json)
    out = {
        "run_dir": str(result.run_dir),
        "report": str(result.run_dir / "report.md"),
        "model": str(result.run_dir / "model"),
        "test_accuracy": result.report["metrics"]["test"]["accuracy"],
    }
    if len(available_devices()) > 1:
        out["compare"] = compare_devices(spec)
        _print_compare(out["compare"], args.json)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"test accuracy {out['test_accuracy']:.4f}", file=sys.stderr)
        print(f"report: {out['report']}\nmodel:  {out['model']}")
    return 0


def _print_compare(result: dict, quiet: bool) -> None:
    if quiet:
        return
    for row in result["devices"]:
        print(
            f"{row['device']:>5} ({row['device_name']}): one epoch {row['epoch_s']:.3f} s, "
            f"{row['samples_per_s']:,.0f} samples/s, speed-up {row['speedup']:.1f}x",
            file=sys.stderr,
        )
