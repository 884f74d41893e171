"""``tensorfab audit pii``: personal data in a file or a folder of text files; a redacted copy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.audit.pii import PiiReport, ner_from_model, scan

EXAMPLE = """\
tensorfab audit pii notes.txt                         # file:line TYPE text, then counts
tensorfab audit pii notes/ --redact notes-redacted/ --json
tensorfab audit pii notes/ --ner runs/conll2003-minilm  # adds PER, LOC, ORG from an NER model"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a text file or a folder of them")
    parser.add_argument(
        "--redact", type=Path, metavar="OUT", help="write a copy with [TYPE] for each finding"
    )
    parser.add_argument(
        "--ner", metavar="MODEL", help="a tensorfab NER package for PER/LOC/ORG (default: none)"
    )
    parser.add_argument("--device", default="cpu", help="device for --ner (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print findings and counts as JSON")


def run(args: argparse.Namespace) -> int:
    ner = ner_from_model(args.ner, args.device) if args.ner else None
    report = scan(args.path, args.redact, ner)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report)
    return 0


def _print(report: PiiReport) -> None:
    for f in report.findings:
        print(f"{f.file}:{f.line}:{f.start + 1}: {f.type} {f.text!r}")
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items()) or "nothing found"
    skipped = f" ({len(report.skipped)} not UTF-8 text, skipped)" if report.skipped else ""
    print(f"{report.files} files scanned{skipped}: {counts}")
