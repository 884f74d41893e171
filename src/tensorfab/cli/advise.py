"""``tensorfab advise``: which GPU for a job spec or a named workload, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.cli.train import add_set_argument
from tensorfab.errors import TensorfabError

EXAMPLE = """tensorfab advise examples/conll2003-minilm.yaml
tensorfab advise examples/mnist-lenet.yaml --gpus h100-sxm,l4,t4 --set data.batch_size=512
tensorfab advise --workload bert-base-infer --batch 1,64 --seq-len 128 --json
tensorfab advise examples/conll2003-minilm.yaml --calibrate h100-2026-12-01-bench-train.json"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="job spec (YAML); or give --workload")
    add_set_argument(parser)
    parser.add_argument("--gpus", help="catalogue ids, comma-separated (default: all)")
    parser.add_argument(
        "--workload",
        help="a named workload instead of a spec: bert-base-infer, bert-base-train, lenet-train",
    )
    parser.add_argument(
        "--batch", default="1", help="--workload batch sizes, comma-separated (default: 1)"
    )
    parser.add_argument(
        "--seq-len", type=int, default=128, help="--workload tokens per sequence (default: 128)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="--workload precision: auto, "
        "fp32, tf32, bf16, fp16 (default: auto; a spec uses train.precision)",
    )
    parser.add_argument(
        "--calibrate",
        type=Path,
        help="measured figures that override the model: a bench micro JSON (peaks), a "
        "bench train JSON measured on a catalogue GPU (corrects its host or device time), "
        "or an advise calibration JSON",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("advise"),
        help="folder for the PNG and markdown (default: ./advise)",
    )
    parser.add_argument("--json", action="store_true", help="print the advice as JSON")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TensorfabError(f"--batch: expected integers like 1,64, not {text!r}") from None
    if not values or min(values) < 1:
        raise TensorfabError(f"--batch: expected positive integers, not {text!r}")
    return values


def _advices(args: argparse.Namespace) -> list:
    from tensorfab.advise import SpecProfiler, advise, profile_named, select_gpus
    from tensorfab.advise.report import load_calibration
    from tensorfab.spec import load_spec

    gpus = select_gpus(args.gpus.split(",") if args.gpus else None)
    calibration = load_calibration(args.calibrate) if args.calibrate else None
    if args.workload:
        return [
            advise(
                lambda p, b=b: profile_named(args.workload, b, args.seq_len, p),
                args.precision,
                gpus,
                calibration,
            )
            for b in _ints(args.batch)
        ]
    if not args.spec:
        raise TensorfabError("advise: give a job spec or --workload NAME")
    spec = load_spec(args.spec, args.overrides)
    return [advise(SpecProfiler(spec), spec.train.precision, gpus, calibration)]


def _merged(advices: list) -> dict:
    """One object: every (GPU, batch size) row in ``gpus``; rankings keyed by batch size
    when there are several."""
    data = advices[0].to_dict()
    if len(advices) > 1:
        data["gpus"] = [row for a in advices for row in a.gpus]
        data["ranking"] = {str(a.gpus[0]["batch_size"]): a.ranking for a in advices}
    return data


def run(args: argparse.Namespace) -> int:
    from tensorfab.advise.report import markdown, plot
    from tensorfab.files import write_text_atomic

    advices = _advices(args)
    for advice in advices:
        batch = advice.gpus[0]["batch_size"]
        stem = args.out / f"advise-{advice.workload}-b{batch}"
        write_text_atomic(stem.with_suffix(".md"), markdown(advice))
        plot(advice, stem.with_suffix(".png"))
    if args.json:
        print(json.dumps(_merged(advices), indent=2))
    else:
        for advice in advices:
            print(markdown(advice))
    return 0
