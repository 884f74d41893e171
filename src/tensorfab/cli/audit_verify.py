"""``tensorfab audit verify``: check a package against its manifest; sign it; check a signature."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.package import resolve_model_dir
from tensorfab.package.manifest import (
    MANIFEST_FILE,
    manifest_problems,
    sign_manifest,
    verify_signature,
    write_manifest,
)

EXAMPLE = """\
tensorfab audit verify runs/digits-lenet
tensorfab audit verify runs/digits-lenet --sign-key publisher.pem      # writes manifest.sig
tensorfab audit verify repo/digits/1 --trusted-key publisher.pub.pem --json
tensorfab audit verify runs/digits-lenet --rewrite      # after a deliberate change: re-digest"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a run directory, a model package or an exported version")
    parser.add_argument(
        "--sign-key", type=Path, help="Ed25519 private key (PEM): sign the verified manifest"
    )
    parser.add_argument(
        "--trusted-key", type=Path, help="Ed25519 public key (PEM): the signature must verify"
    )
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="write a new manifest over the files as they are now (default: only check)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    model_dir = _model_dir(Path(args.model))
    if args.rewrite:
        write_manifest(model_dir)
    if not (model_dir / MANIFEST_FILE).is_file():
        raise TensorfabError(f"{model_dir}: no {MANIFEST_FILE}: unverified (--rewrite writes one)")
    problems = manifest_problems(model_dir)
    if not problems and args.sign_key:
        sign_manifest(model_dir, args.sign_key)
    if not problems and args.trusted_key:
        verify_signature(model_dir, args.trusted_key)
    _report(model_dir, problems, args)
    return 2 if problems else 0


def _model_dir(path: Path) -> Path:
    if (path / MANIFEST_FILE).is_file() or (path / "tensorfab.json").is_file():
        return path
    return resolve_model_dir(path)


def _report(model_dir: Path, problems: list[str], args: argparse.Namespace) -> None:
    signed = "signature verified" if args.trusted_key else "signed" if args.sign_key else ""
    if args.json:
        result = {"path": str(model_dir), "ok": not problems, "problems": problems}
        print(json.dumps({**result, "signature": signed or None}, indent=2))
        return
    for problem in problems:
        print(f"{model_dir / problem}")
    state = f"FAILED ({len(problems)} files)" if problems else "ok"
    print(f"{model_dir}: manifest {state}" + (f"; {signed}" if signed and not problems else ""))
