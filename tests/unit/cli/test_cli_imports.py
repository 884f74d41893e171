"""Lazy command imports: the base install runs without extras, --help imports no torch.

Each check runs the CLI in a fresh interpreter, where a meta-path finder hides the serve
extra's packages (as if ``pip install tensorfab`` had been run without ``[serve]``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tensorfab.cli.main import COMMANDS, extra_packages, missing_extra

HIDE_AND_RUN = """
import sys

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Hidden())
from tensorfab.cli.main import main

try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
cli = sorted(m for m in sys.modules if m.startswith("tensorfab.cli."))
print(__import__("json").dumps({{"torch": "torch" in sys.modules, "cli": cli}}), file=sys.stderr)
sys.exit(code)
"""
SERVE_EXTRA = ("fastapi", "uvicorn", "prometheus_client", "httpx")


def run_cli(*argv: str, hidden: tuple[str, ...] = SERVE_EXTRA) -> tuple[int, str, str, dict]:
    """(exit code, stdout, stderr without the last line, what the process had imported)."""
    code = HIDE_AND_RUN.format(hidden=set(hidden))
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    *errors, imported = done.stderr.splitlines()
    return done.returncode, done.stdout, "\n".join(errors), json.loads(imported)


def test_top_level_help_imports_no_command_and_no_torch() -> None:
    code, out, err, imported = run_cli("--help")
    assert code == 0 and err == ""
    for name, (_, help_text) in COMMANDS.items():
        assert name in out and help_text.split(",")[0] in " ".join(out.split())
    assert imported == {"torch": False, "cli": ["tensorfab.cli.main"]}


# Commands whose --help imports no torch: their modules import heavy layers inside ``run``.
LIGHT_HELP = {
    "train": ["tensorfab.cli.main", "tensorfab.cli.train"],
    "serve": ["tensorfab.cli.main", "tensorfab.cli.serve"],
    "perf": ["tensorfab.cli.main", "tensorfab.cli.perf"],
    "spec": ["tensorfab.cli.main", "tensorfab.cli.spec", "tensorfab.cli.train"],
    "info": ["tensorfab.cli.info", "tensorfab.cli.main"],
    "demo": ["tensorfab.cli.demo", "tensorfab.cli.main"],
}


@pytest.mark.parametrize("command", sorted(LIGHT_HELP))
def test_help_without_serve_extra_imports_only_its_module(command: str) -> None:
    code, out, _, imported = run_cli(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: tensorfab {command}") and "example:" in out
    assert imported == {"torch": False, "cli": LIGHT_HELP[command]}


def test_serve_without_serve_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    code, out, err, _ = run_cli("serve", str(tmp_path))
    assert code == 2 and out == ""
    assert err == ("error: 'tensorfab serve' needs the serve extra: pip install 'tensorfab[serve]'")


def test_import_of_main_does_not_import_torch() -> None:
    probe = "import sys, tensorfab.cli.main; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "False\n"


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("fastapi", "serve"),
        ("uvicorn.config", "serve"),
        ("prometheus_client", "serve"),
        ("onnx", "deploy"),
        ("onnxruntime.quantization", "deploy"),
        ("transformers", "text"),
        ("seqeval.metrics", "text"),
        ("torchvision", None),
    ],
)
def test_missing_module_maps_to_its_extra(module: str, extra: str | None) -> None:
    assert missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module)) == extra


def test_extras_come_from_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).parents[3] / "pyproject.toml"
    optional = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert set(extra_packages().values()) == set(optional)
    assert extra_packages()["prometheus_client"] == "serve"  # "prometheus-client" there
