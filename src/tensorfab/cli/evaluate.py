"""``tensorfab evaluate RUN_DIR|MODEL_DIR [--data PATH]``: score a model package."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from tensorfab.engine.inference import evaluate_model

HELP = "score a trained model on its test split or on your own labelled data"
EXAMPLE = """\
tensorfab evaluate runs/digits-lenet
tensorfab evaluate runs/mnist-lenet --data ../shared/data/mnist/t10k-images-idx3-ubyte.gz --json
tensorfab evaluate runs/my-run/model --data my_images/   # one sub-folder per class"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument(
        "--data",
        help="IDX images file (labels beside it), IDX folder, "
        "or image folder with one sub-folder per class",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    result = evaluate_model(args.model, args.data, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    scores = result["scores"]
    table = Table(title=f"{result['model']} on {result['data']} ({result['n']} examples)")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for name, row in scores["per_class"].items():
        table.add_row(
            name,
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"accuracy {scores['accuracy']:.4f}  macro F1 {scores['macro_f1']:.4f}  "
        f"loss {scores['loss']:.4f}"
    )
    return 0
