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
    (tmp_path / "m" / "1").mkdir(parents=True)  # a repository with something to serve
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
        f"error: --texts {texts}: no such file"
    )
    texts.write_text("\n  \n")
    assert _error(capsys, "perf", url, "--model", "m", "--texts", str(texts)) == (
        f"error: --texts {texts}: no text lines"
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


def test_perf_refuses_folders_binary_texts_and_bad_time_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, texts = "http://127.0.0.1:9", tmp_path / "bin.txt"
    perf = ("perf", url, "--model", "m", "--texts")
    assert _error(capsys, *perf, str(tmp_path)) == (
        f"error: --texts {tmp_path}: is a directory; give a file with one text a line"
    )
    texts.write_bytes(b"ok\n\xff\xfe\n")
    assert _error(capsys, *perf, str(texts)) == (
        f"error: {texts}:2: invalid UTF-8 (byte 0xff at column 1)"
    )
    for bound in ("nan", "-1", "0", "inf"):
        assert _error(capsys, *perf, str(texts), "--max-seconds", bound) == (
            f"error: --max-seconds {float(bound)}: must be a number above 0"
        )


def test_a_token_that_is_not_printable_ascii_is_refused_by_server_and_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("a text\n")
    monkeypatch.setenv("TENSORFAB_TOKEN", "t\u00f6k en")
    expected = (
        "error: $TENSORFAB_TOKEN: the token holds '\u00f6' at character 1; a bearer token is "
        "printable ASCII (an HTTP header cannot carry other characters)"
    )
    assert _error(capsys, "perf", "http://127.0.0.1:9", "--model", "m", "--texts", str(texts)) == (
        expected
    )
    (tmp_path / "m" / "1").mkdir(parents=True)
    assert _error(capsys, "serve", str(tmp_path), "--port", "0") == expected
    assert _error(capsys, "jobs", "ls", "--url", "http://127.0.0.1:9") == expected
    monkeypatch.setenv("TENSORFAB_TOKEN", "tab\there")
    assert "holds '\\t' at character 3" in _error(capsys, "serve", str(tmp_path), "--port", "0")


def test_serve_refuses_an_unset_token_variable_no_models_and_a_shared_grpc_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    monkeypatch.delenv("TENSORFAB_TOKEN", raising=False)
    serve = ("serve", str(tmp_path), "--port", "0")
    assert _error(capsys, *serve) == (
        f"error: {tmp_path}: no models to serve (no <model>/<version>/ folder); "
        "export one with 'tensorfab export RUN --repo REPO --name NAME'"
    )
    (tmp_path / "m" / "1").mkdir(parents=True)
    assert _error(capsys, *serve, "--token-env", "NOPE_UNSET") == (
        "error: --token-env NOPE_UNSET: $NOPE_UNSET is not set; set it to the token, "
        "or leave --token-env out to serve without auth"
    )
    assert _error(capsys, *serve, "--models", " , ") == (
        "error: --models ' , ': names no model; give NAME[,NAME...]"
    )
    assert _error(capsys, "serve", str(tmp_path), "--port", "18719", "--grpc-port", "18719") == (
        "error: --grpc-port 18719: that is the HTTP port (--port) already; "
        "give gRPC a port of its own"
    )


def test_export_hf_refuses_repository_options_that_do_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = ("export", str(tmp_path / "run"), "--format", "hf", str(tmp_path / "hf"))
    assert _error(capsys, *hf, "--repo", "x", "--latency") == (
        "error: export --format hf: --repo and --latency do not apply (a repository "
        "export's options); leave them out"
    )
    assert _error(capsys, *hf, "--latency").startswith(
        "error: export --format hf: --latency does not"
    )
    assert not (tmp_path / "hf").exists()
