"""``tensorfab audit``: the table of audits, an unknown one refused in one line, and only the
chosen audit's module imported (pii needs no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tensorfab.cli.audit import AUDITS
from tensorfab.cli.main import main


def test_unknown_audit_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: audit 'bogus': unknown; choose one of {', '.join(AUDITS)}"


def test_audit_without_a_name_lists_the_audits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit"]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in ("pii", "verify", "robustness", "card", "fairness"))


def test_audit_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    """pii here (no torch); the others in tests/integration/audit, where torch is loaded."""
    with pytest.raises(SystemExit) as info:
        main(["audit", "pii", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tensorfab audit pii")
    assert "example:\n  tensorfab audit pii notes.txt" in out


def test_only_the_chosen_audit_is_imported(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("a@example.com\n", encoding="utf-8")
    code = (
        "import sys; from tensorfab.cli.main import main; "
        f"rc = main(['audit', 'pii', {str(f)!r}]); "
        "print(rc, 'torch' in sys.modules, 'tensorfab.cli.audit_verify' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False False"
