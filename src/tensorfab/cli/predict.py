"""``tensorfab predict RUN_DIR|MODEL_DIR INPUT...``: labels and probabilities."""

from __future__ import annotations

import argparse
import json

from tensorfab.engine.inference import predict_inputs
from tensorfab.errors import TensorfabError
from tensorfab.hardware import resolve_device

EXAMPLE = """\
tensorfab predict runs/digits-lenet digit.png another.png
tensorfab predict runs/mnist-lenet ../shared/data/mnist/t10k-images-idx3-ubyte.gz --json
tensorfab predict runs/conll2003-minilm "EU rejects German call to boycott British lamb ."
tensorfab predict runs/conll2003-minilm-context article.txt   # one sentence a line: one document
tensorfab predict runs/phrasebank-minilm headlines.txt --json"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files (png, jpg, tiff, ...; an image model reads files, not folders), IDX "
        "files, texts or text files (one text a line; the lines of a file are one document, "
        "read in context by an NER model trained with data.context)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        help="image models: the most probable classes to show (at most the model's classes)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:  # 0 used to crash and -1 to drop the last class silently
        raise TensorfabError(f"--top-k must be at least 1, not {args.top_k}")
    resolve_device(args.device, "--device")  # a bad --device is named as the flag
    rows = predict_inputs(args.model, args.inputs, device=args.device, top_k=args.top_k)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(format_row(row))
    return 0


def format_row(row: dict) -> str:
    """One prediction as a line: entities with spans, or a label with its probabilities."""
    if "entities" in row:
        found = "  ".join(
            f"{e['text']} [{e['type']} {e['start']}:{e['end']} {e['score']:.3f}]"
            for e in row["entities"]
        )
        return f"{row['text']}\n  {found or '(no entities)'}"
    if "top" in row:
        top = "  ".join(f"{k}:{v:.3f}" for k, v in row["top"].items())
        notes = "".join(f"\n  note: {n}" for n in row.get("notes", []))
        return f"{row['input']}\t{row['label']}\t{row['score']:.4f}\t{top}{notes}"
    if "items" in row:  # recommended items with their scores
        items = "  ".join(f"{i['item']}:{i['score']:.3f}" for i in row["items"])
        notes = "".join(f"\n  note: {n}" for n in row.get("notes", []))
        return f"{row['input']}\t{items}{notes}"
    probs = "  ".join(f"{k}:{v:.3f}" for k, v in row["probabilities"].items())
    return f"{row['label']}\t{row['score']:.4f}\t{probs}\t{row['text']}"
