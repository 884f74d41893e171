"""``tensorfab``: a table from command name to module, nothing more.

Each command module defines ``HELP`` (one line), ``EXAMPLE`` (shown by ``--help``),
``configure(parser)`` and ``run(args) -> int``. A :class:`TensorfabError` anywhere ends
in one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tensorfab import __version__
from tensorfab.errors import TensorfabError

COMMANDS = {
    "train": "tensorfab.cli.train",
    "evaluate": "tensorfab.cli.evaluate",
    "predict": "tensorfab.cli.predict",
    "info": "tensorfab.cli.info",
    "demo": "tensorfab.cli.demo",
    "export": "tensorfab.cli.export",
    "bench": "tensorfab.cli.bench",
    "serve": "tensorfab.cli.serve",
    "perf": "tensorfab.cli.perf",
    "spec": "tensorfab.cli.spec",
    "jobs": "tensorfab.cli.jobs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorfab",
        description=(
            "Train, evaluate and measure deep-learning models on whatever compute is there."
        ),
        epilog="example:\n  tensorfab train examples/digits-lenet.yaml --set train.epochs=3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tensorfab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog="example:\n  " + module.EXAMPLE.strip().replace("\n", "\n  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _dispatch(argv)
        finally:  # a closed pipe shows here, not at exit where it cannot be caught
            sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()


def _dispatch(argv: Sequence[str] | None) -> int:
    """Parse, run the command, and turn a TensorfabError into one ``error:`` line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TensorfabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``tensorfab spec ... | head -5``): stop quietly.

    Python's documented recipe: point stdout at devnull so the flush at exit cannot raise
    again. The exit code is 141 (128 + SIGPIPE), what ``git log | head`` and coreutils end
    with when killed by SIGPIPE: the output was cut short, so it is not a success (0), yet
    no error message is due; a shell reports the pipeline by ``head``'s status anyway, and
    ``set -o pipefail`` scripts see the same code they see for ``cat`` or ``git``.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
