"""The package manifest: what it lists, each kind of tampering refused in one line, the
load hook, amendments, Ed25519 signing, and ``tensorfab audit verify``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tensorfab.cli.main import main
from tensorfab.errors import TensorfabError
from tensorfab.package.manifest import (
    amending,
    check_manifest,
    manifest_problems,
    sign_manifest,
    verify_signature,
    write_manifest,
)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "pkg"
    (d / "tokenizer").mkdir(parents=True)
    (d / "tensorfab.json").write_text('{"a": 1}\n')
    (d / "tokenizer" / "vocab.txt").write_text("x\ny\n")
    write_manifest(d)
    return d


def test_manifest_lists_every_file_with_its_sha256(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == {
        "algorithm": "sha256",
        "files": {
            "tensorfab.json": hashlib.sha256(b'{"a": 1}\n').hexdigest(),
            "tokenizer/vocab.txt": hashlib.sha256(b"x\ny\n").hexdigest(),
        },
    }
    check_manifest(folder)  # unchanged: no error


def test_changed_missing_and_added_files_are_each_named(folder: Path) -> None:
    (folder / "tensorfab.json").write_text('{"a": 2}\n')
    (folder / "tokenizer" / "vocab.txt").unlink()
    (folder / "extra.bin").write_bytes(b"1")
    assert manifest_problems(folder) == [
        "tokenizer/vocab.txt: missing",
        "extra.bin: not in the manifest",
        "tensorfab.json: changed (sha256 differs)",
    ]
    with pytest.raises(TensorfabError) as info:
        check_manifest(folder)
    msg = str(info.value)
    assert msg.startswith(f"{folder}: integrity check failed: tokenizer/vocab.txt: missing")
    assert "(and 2 more)" in msg and "\n" not in msg


def test_amending_refuses_a_tampered_package_and_remanifests_a_good_one(folder: Path) -> None:
    with amending(folder):
        (folder / "README.md").write_text("card\n")
    assert manifest_problems(folder) == []
    (folder / "tensorfab.json").write_text("{}")
    with pytest.raises(TensorfabError, match="integrity check failed"), amending(folder):
        (folder / "README.md").write_text("new card\n")
    assert (folder / "README.md").read_text() == "card\n"


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    tmp_path.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "k.pem"
    public = tmp_path / "k.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_a_rewritten_manifest_fails_the_signature(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    private, public = _keys(tmp_path)
    sign_manifest(folder, private)
    verify_signature(folder, public)
    # the attacker edits a file and rewrites the digests to match: the digests agree ...
    (folder / "tensorfab.json").write_text('{"a": "evil"}\n')
    signature = (folder / "manifest.sig").read_text()
    write_manifest(folder)
    (folder / "manifest.sig").write_text(signature)
    assert manifest_problems(folder) == []
    with pytest.raises(TensorfabError, match="signature does not verify"):
        verify_signature(folder, public)  # ... the signature does not
    other_private, _ = _keys(tmp_path / "other")
    sign_manifest(folder, other_private)  # signed by someone else's key
    with pytest.raises(TensorfabError, match="signature does not verify"):
        verify_signature(folder, public)


def test_cli_verify_exit_codes(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cryptography")
    private, public = _keys(tmp_path)
    assert main(["audit", "verify", str(folder), "--sign-key", str(private)]) == 0
    assert main(["audit", "verify", str(folder), "--trusted-key", str(public), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["signature"] == "signature verified"
    (folder / "tokenizer" / "vocab.txt").write_text("z\n")
    assert main(["audit", "verify", str(folder)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"{folder / 'tokenizer/vocab.txt: changed (sha256 differs)'}",
        f"{folder}: manifest FAILED (1 files)",
    ]


def test_a_fifo_in_a_package_is_refused_never_left_out_of_a_rewritten_manifest(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    before = (folder / "manifest.json").read_text()
    os.mkfifo(folder / "model.onnx")
    assert main(["audit", "verify", str(folder), "--rewrite"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {folder / 'model.onnx'}: not a regular file; a package holds only files"
    )
    assert (folder / "manifest.json").read_text() == before  # not rewritten without it
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(TensorfabError, match=r"manifest.json: expected \{'algorithm'"):
        manifest_problems(folder)
