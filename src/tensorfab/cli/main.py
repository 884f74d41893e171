"""``tensorfab``: a table from command name to module, nothing more.

Each command module defines ``EXAMPLE`` (shown by ``--help``), ``configure(parser)`` and
``run(args) -> int``; its one-line help lives in :data:`COMMANDS`. Only the command that runs
is imported, so ``tensorfab --help`` imports no torch and a command whose extra is not
installed cannot break the others. A :class:`TensorfabError` anywhere ends in one
``error: ...`` line and exit code 2; so does a missing optional dependency, naming its extra.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from functools import cache
from types import ModuleType

from tensorfab import __version__
from tensorfab.errors import TensorfabError

# name -> (module, one-line help). A new command is one entry here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "tensorfab.cli.train",
        "train a model from a job spec (YAML), or resume an interrupted run",
    ),
    "evaluate": (
        "tensorfab.cli.evaluate",
        "score a trained model on its test split or on your own labelled data",
    ),
    "predict": (
        "tensorfab.cli.predict",
        "predict labels for images, IDX files, texts, or files of texts (one per line)",
    ),
    "info": (
        "tensorfab.cli.info",
        "show the CPU, memory, torch build and GPUs (precisions, peaks, live readings)",
    ),
    "demo": (
        "tensorfab.cli.demo",
        "train LeNet on the embedded digits data and evaluate it; with a GPU present, also "
        "time one epoch on CPU and GPU",
    ),
    "ensemble": (
        "tensorfab.cli.ensemble",
        "make one model package of several runs of the same model (seeds): their mean runs",
    ),
    "export": (
        "tensorfab.cli.export",
        "export a trained model to ONNX (fp32, int8-dynamic, int8-static) and, on request, "
        "PyTorch GPU variants, with a parity report; or a text model for Hugging Face",
    ),
    "bench": (
        "tensorfab.cli.bench",
        "benchmark the hardware and tensorfab against the tutorials' plain PyTorch loops",
    ),
    "serve": (
        "tensorfab.cli.serve",
        "serve a model repository (KServe v2 / Triton protocol: HTTP, gRPC; dynamic batching)",
    ),
    "perf": (
        "tensorfab.cli.perf",
        "load-test a running server: concurrent clients, requests/s, p50/p99 latency",
    ),
    "spec": (
        "tensorfab.cli.spec",
        "validate a job spec and print it resolved, without running anything",
    ),
    "data": (
        "tensorfab.cli.data",
        "fetch a data set that tensorfab may not ship (movielens-100k), sha256-checked",
    ),
    "jobs": (
        "tensorfab.cli.jobs",
        "a shared job queue and GPU scheduler for this node (daemon, submit, ls, top, report)",
    ),
    "advise": (
        "tensorfab.cli.advise",
        "which GPU for a job spec: predicted time, memory, energy and cost per catalogue GPU",
    ),
    "audit": (
        "tensorfab.cli.audit",
        "audit a model or data: PII, integrity (manifest, signature), robustness, model card",
    ),
}
# "fastapi>=0.110; extra == \"serve\"" in the installed package's requirements (pyproject's
# optional-dependencies): the distribution name and its extra.
EXTRA_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*).*;.*\bextra\s*==\s*[\"']([^\"']+)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and every option's default shown.

    argparse's ``ArgumentDefaultsHelpFormatter`` would also print "(default: None)" and
    "(default: False)"; this one adds ``(default: X)`` only where there is a value to show
    and the help does not already say what the default is.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not shows_default(action) or "default" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    """Whether ``--help`` must show ``action``'s default: an option with a real value."""
    default = action.default
    if default is None or default is False or default == [] or default == argparse.SUPPRESS:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


def parsers_in(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it (``jobs submit``, ``bench micro``)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += parsers_in(sub)
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported and its options added."""
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
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == command:
            _configure(cmd, importlib.import_module(module_name))
    for each in parsers_in(parser):
        each.formatter_class = HelpFormatter
        for action in each._actions:  # argparse prints nothing for an option without help
            if action.help is None and shows_default(action):
                action.help = "(default: %(default)s)"
    return parser


def _configure(cmd: argparse.ArgumentParser, module: ModuleType) -> None:
    """The command's own options, example and run function."""
    cmd.epilog = "example:\n  " + module.EXAMPLE.strip().replace("\n", "\n  ")
    module.configure(cmd)
    cmd.set_defaults(_run=module.run)


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


@cache
def extra_packages() -> dict[str, str]:
    """Import name -> extra, for every optional dependency of the installed tensorfab."""
    import importlib.metadata  # only when a module is missing: 40 ms of start-up otherwise

    try:
        requires = importlib.metadata.requires("tensorfab") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    extras: dict[str, str] = {}
    for requirement in requires:
        match = EXTRA_REQUIREMENT.match(requirement)
        if match:  # the first extra that names a package is the one to suggest
            extras.setdefault(match[1].lower().replace("-", "_").replace(".", "_"), match[2])
    return extras


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that installs the module ``exc`` found missing, or None if none does."""
    return extra_packages().get((exc.name or "").split(".")[0])


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
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_in(argv)
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except TensorfabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(
            f"error: 'tensorfab {command}' needs the {extra} extra: "
            f"pip install 'tensorfab[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        if exc.filename is None:
            raise
        # a folder or file the user named that cannot be made or written (``--out`` under
        # a file, a read-only place): the path and the reason, as for any bad input
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


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
