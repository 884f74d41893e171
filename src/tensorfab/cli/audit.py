"""``tensorfab audit``: a table from sub-command name to module, the way cli/main.py does it.

Each sub-command module defines ``EXAMPLE``, ``configure(parser)`` and ``run(args) -> int``;
its one-line help lives in :data:`AUDITS`. Only the sub-command that runs is imported, so an
audit whose extra is missing (fairlearn, opacus, cryptography) cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib

from tensorfab.errors import TensorfabError

EXAMPLE = """\
tensorfab audit verify runs/digits-lenet                  # sha256 manifest (+ signature)
tensorfab audit pii notes/ --redact notes-redacted/ --json
tensorfab audit robustness runs/digits-lenet --json
tensorfab audit fairness runs/adult-mlp --data adult.test --sensitive sex,race
tensorfab audit card runs/digits-lenet                    # regenerate model/README.md"""

# name -> (module, one-line help). A new audit is one entry here.
AUDITS: dict[str, tuple[str, str]] = {
    "pii": (
        "tensorfab.cli.audit_pii",
        "find e-mails, phones, card numbers, IBANs, IPs (and names, with an NER model); redact",
    ),
    "verify": (
        "tensorfab.cli.audit_verify",
        "check a model package against its sha256 manifest (and its Ed25519 signature)",
    ),
    "robustness": (
        "tensorfab.cli.audit_robustness",
        "accuracy under FGSM/PGD (images) or character noise (texts), asked of the task",
    ),
    "fairness": (
        "tensorfab.cli.audit_fairness",
        "metrics by group (size, accuracy, selection rate, TPR, FPR, calibration), parity gaps",
    ),
    "privacy": (
        "tensorfab.cli.audit_privacy",
        "membership inference: loss-threshold attack AUC (train vs held out) with its 95% CI",
    ),
    "card": (
        "tensorfab.cli.audit_card",
        "regenerate the package's README.md model card from its measured reports",
    ),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """``audit NAME [options]``: NAME's own options are parsed by :func:`run`, once chosen."""
    parser.description = (
        (parser.description or "")
        + "\n\naudits:\n"
        + "\n".join(f"  {name:<11} {help_text}" for name, (_, help_text) in AUDITS.items())
    )
    parser.add_argument("audit", nargs="?", metavar="AUDIT", help="one of: " + ", ".join(AUDITS))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def audit_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one audit, its module imported (and only its module)."""
    if name not in AUDITS:
        raise TensorfabError(f"audit {name!r}: unknown; choose one of {', '.join(AUDITS)}")
    module_name, help_text = AUDITS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"tensorfab audit {name}",
        description=help_text,
        epilog="example:\n  " + module.EXAMPLE.strip().replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.configure(parser)
    parser.set_defaults(_audit_run=module.run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.audit is None:
        print("usage: tensorfab audit AUDIT [options]; audits: " + ", ".join(AUDITS))
        return 2
    sub_args = audit_parser(args.audit).parse_args(args.rest)
    return int(sub_args._audit_run(sub_args) or 0)
