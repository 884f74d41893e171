"""``tensorfab serve`` and ``tensorfab perf`` refuse bad input with one line, before any work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tensorfab.cli.main import main


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err.strip()


def test_serve_refuses_a_port_in_use_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _error(capsys, "serve", str(tmp_path), "--port", str(port))
    assert message == f"error: 127.0.0.1:{port}: cannot listen there (Address already in use)"


def test_perf_refuses_missing_or_empty_texts_and_bad_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, texts = "http://127.0.0.1:9", tmp_path / "texts.txt"
    assert _error(capsys, "perf", url, "--model", "m", "--texts", str(texts)) == (
        f"error: {texts}: no such file"
    )
    texts.write_text("\n  \n")
    assert _error(capsys, "perf", url, "--model", "m", "--texts", str(texts)) == (
        f"error: {texts}: no text lines"
    )
    texts.write_text("a sentence .\n")
    assert _error(capsys, "perf", url, "--model", "m", "--texts", str(texts), "--clients", "0") == (
        "error: --clients and --requests must be at least 1"
    )


def test_serve_refuses_an_empty_token_instead_of_serving_without_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorfab.serve

    def served(*_: object) -> str:  # were the token taken as "no auth", it would serve
        raise AssertionError("the server started without auth")

    monkeypatch.setattr(tensorfab.serve, "run_server", served)
    monkeypatch.setenv("TENSORFAB_TOKEN", "")
    message = _error(capsys, "serve", str(tmp_path), "--port", "0")
    assert message == "error: $TENSORFAB_TOKEN is set but empty; set a token or unset it"
