"""``tensorfab advise``: which GPU for a job spec or a named workload, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.cli.train import add_set_argument
from tensorfab.errors import TensorfabError

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
WORKLOAD_ONLY = {"batch": "1", "seq_len": 128, "precision": "auto"}  # and their defaults

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
        "--batch", help="--workload only: batch sizes, comma-separated (default: 1)"
    )
    parser.add_argument(
        "--seq-len", type=int, help="--workload only: tokens per sequence (default: 128)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="--workload only (a spec uses train.precision): %(choices)s (default: auto)",
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


def _gpu_ids(text: str | None) -> list[str] | None:
    """The ids ``--gpus`` names (None: all); an empty or repeated id is refused."""
    if text is None:
        return None
    ids = [i.strip().lower() for i in text.split(",")]
    if not all(ids):
        raise TensorfabError(f"--gpus: expected catalogue ids like h100-sxm,l4, not {text!r}")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise TensorfabError(f"--gpus: {', '.join(repeated)} given more than once")
    return ids


def _check_out(out: Path) -> None:
    """``--out`` must be a folder, or be made as one: nothing on its path is a file."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise TensorfabError(f"--out {out}: {path} exists and is not a folder")
            return


def _check_mode(args: argparse.Namespace) -> None:
    """A spec and a named workload each take their own arguments only."""
    if args.workload and (args.spec or args.overrides):
        raise TensorfabError(
            "advise: --workload takes no job spec and no --set (they are a spec's)"
        )
    if not args.workload:
        given = [k for k in WORKLOAD_ONLY if getattr(args, k) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise TensorfabError(
                f"advise: {flag} is for --workload only; a spec uses its own data and "
                "train fields (change them with --set)"
            )
    for key, default in WORKLOAD_ONLY.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.seq_len < 1:
        raise TensorfabError(f"--seq-len: expected a positive integer, not {args.seq_len}")


def _advices(args: argparse.Namespace) -> list:
    from tensorfab.advise import SpecProfiler, advise, profile_named, select_gpus
    from tensorfab.advise.report import load_calibration
    from tensorfab.spec import load_spec

    _check_mode(args)
    _check_out(args.out)
    batches = _ints(args.batch)
    gpus = select_gpus(_gpu_ids(args.gpus))
    calibration = load_calibration(args.calibrate) if args.calibrate else None
    if args.workload:
        return [
            advise(
                lambda p, b=b: profile_named(args.workload, b, args.seq_len, p),
                args.precision,
                gpus,
                calibration,
            )
            for b in batches
        ]
    if not args.spec:
        raise TensorfabError("advise: give a job spec or --workload NAME")
    spec = load_spec(args.spec, args.overrides)
    return [advise(SpecProfiler(spec), spec.train.precision, gpus, calibration)]


def _stem(out: Path, workload: str, batch: int) -> Path:
    """``advise-<workload>-b<batch>``; a name that already ends so (a spec called
    mnist-lenet-b512) is not given the batch twice."""
    name = workload if workload.endswith(f"-b{batch}") else f"{workload}-b{batch}"
    return out / f"advise-{name}"


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
        stem = _stem(args.out, advice.workload, batch)
        write_text_atomic(stem.with_suffix(".md"), markdown(advice))
        plot(advice, stem.with_suffix(".png"))
    if args.json:
        print(json.dumps(_merged(advices), indent=2, allow_nan=False))
    else:
        for advice in advices:
            print(markdown(advice))
    return 0
