"""``tensorfab evaluate RUN_DIR|MODEL_DIR [--data PATH]``: score a model package."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from tensorfab.engine.inference import evaluate_model
from tensorfab.hardware import resolve_device

EXAMPLE = """\
tensorfab evaluate runs/digits-lenet
tensorfab evaluate runs/mnist-lenet --data ../shared/data/mnist/t10k-images-idx3-ubyte.gz --json
tensorfab evaluate runs/my-run/model --data my_images/   # one sub-folder per class"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument(
        "--data",
        help="IDX images file (labels beside it), IDX folder, image folder with one "
        "sub-folder per class; for text models a CSV/TSV/JSONL/PhraseBank or CoNLL file",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    resolve_device(args.device, "--device")  # a bad --device is named as the flag, not a field
    result = evaluate_model(args.model, args.data, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    # title and summary by plain print: rich wraps long lines at 80 columns in a pipe
    print(f"{result['model']} on {result['data']} ({result['n']} examples)")
    Console().print(score_table(result["scores"]))
    print(summary_line(result["scores"]))
    return 0


def score_table(scores: dict[str, Any]) -> Table:
    """Entity-level scores for token classification (NER), per-class scores otherwise."""
    if "entity" in scores:
        return entity_table(scores["entity"])
    return class_table(scores["per_class"])


def summary_line(scores: dict[str, Any]) -> str:
    """The headline numbers under the table: CoNLL entity F1 for NER, accuracy otherwise."""
    if "entity" in scores:
        line = (
            f"entity F1 {scores['f1']:.4f}  precision {scores['precision']:.4f}  "
            f"recall {scores['recall']:.4f}  token accuracy {scores['token_accuracy']:.4f}"
        )
    else:
        line = f"accuracy {scores['accuracy']:.4f}  macro F1 {scores['macro_f1']:.4f}"
    return line + (f"  loss {scores['loss']:.4f}" if "loss" in scores else "")


def _score_table(first: str, rows: dict[str, dict[str, Any]]) -> Table:
    """One row per class or entity type: precision, recall, F1, support."""
    table = Table()
    for col in (first, "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == first else "right")
    for name, row in rows.items():
        table.add_row(name, *_cells(row, row["support"]))
    return table


def _cells(row: dict[str, Any], support: int) -> tuple[str, ...]:
    return f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(support)


def class_table(per_class: dict[str, dict[str, Any]]) -> Table:
    """Classification scores per class (images, texts)."""
    return _score_table("class", per_class)


def entity_table(entity: dict[str, Any]) -> Table:
    """Entity-level scores per type, then the micro average over all entities (CoNLL's F1).

    The overall row's support is the number of true entities, as conlleval counts them.
    """
    table = _score_table("entity type", entity["per_type"])
    table.add_section()
    table.add_row("all (micro)", *_cells(entity, entity["n_entities_true"]))
    return table
