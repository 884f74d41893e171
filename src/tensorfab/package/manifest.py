"""The package's manifest: a sha256 digest of every file, written at save and export,
checked on every load; optionally signed with Ed25519.

What each protects against: the digest list alone detects corruption (a truncated copy, a
bad disk, a half-finished sync) and careless edits (a hand-edited tensorfab.json, a swapped
weights file): any changed, missing or added file is refused with one line. It does not stop
an attacker who can write the folder, since they can rewrite ``manifest.json`` to match.
A signature (``manifest.sig``, Ed25519 over the manifest's bytes, by a key only the
publisher holds) adds that: verified against a public key the user trusts, a rewritten
manifest no longer verifies. ``cryptography`` (the ``audit`` extra) is needed only to sign
or to check a signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
ALGORITHM = "sha256"
UNLISTED = {MANIFEST_FILE, SIGNATURE_FILE}
CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """The hex sha256 of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_files(directory: Path) -> list[str]:
    """Every file under ``directory`` (POSIX relative paths, sorted) but the manifest's own
    and the temporary files of an atomic write in progress; anything else that is not a
    folder (a FIFO, a dangling link) is refused, never left out of a manifest silently."""
    found = []
    for p in directory.rglob("*"):
        if p.name in UNLISTED or p.name.endswith(".tmp") or p.is_dir():
            continue
        if not p.is_file():  # a FIFO, socket or device: no digest can cover it
            raise TensorfabError(f"{p}: not a regular file; a package holds only files")
        found.append(p.relative_to(directory).as_posix())
    return sorted(found)


def digests(directory: Path) -> dict[str, str]:
    return {name: file_digest(directory / name) for name in package_files(directory)}


def write_manifest(directory: str | Path) -> Path:
    """(Re)write ``manifest.json`` over the folder's files. A signature no longer matches a
    new manifest, so it is removed: sign again (``tensorfab audit verify --sign-key``)."""
    d = Path(directory)
    manifest = {"algorithm": ALGORITHM, "files": digests(d)}
    write_text_atomic(d / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (d / SIGNATURE_FILE).unlink(missing_ok=True)
    return d / MANIFEST_FILE


def read_manifest(directory: Path) -> dict[str, str]:
    """The manifest's file -> digest table; a malformed manifest is one error line."""
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TensorfabError(f"{path}:{exc.lineno}: invalid JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("algorithm") != ALGORITHM:
        raise TensorfabError(f"{path}: expected {{'algorithm': 'sha256', 'files': {{...}}}}")
    return files


def manifest_problems(directory: Path) -> list[str]:
    """Each file that differs from the manifest: changed, missing or not listed."""
    listed = read_manifest(directory)
    present = set(package_files(directory))
    problems = [f"{name}: missing" for name in sorted(set(listed) - present)]
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
    problems += [
        f"{name}: changed (sha256 differs)"
        for name in sorted(set(listed) & present)
        if file_digest(directory / name) != listed[name]
    ]
    return problems


def check_manifest(directory: str | Path) -> None:
    """The load hook: refuse a package whose files do not match its manifest, in one line.

    A package without a manifest (written before manifests existed) loads as it did;
    ``tensorfab audit verify`` reports it as unverified.
    """
    d = Path(directory)
    if not (d / MANIFEST_FILE).is_file():
        return
    problems = manifest_problems(d)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TensorfabError(
            f"{d}: integrity check failed: {problems[0]}{more}; see 'tensorfab audit verify {d}'"
        )


@contextmanager
def amending(directory: str | Path) -> Iterator[Path]:
    """Add or replace files in a package (its model card, audit reports) and re-manifest it.

    The package is checked first, so an amendment never launders a changed file into a new
    manifest; a signature does not survive (sign again after the card is regenerated).
    """
    d = Path(directory)
    check_manifest(d)
    yield d
    if (d / MANIFEST_FILE).is_file():
        write_manifest(d)


# -- signing (Ed25519, through cryptography: the audit extra) -------------------------------


def sign_manifest(directory: str | Path, private_key_pem: Path) -> Path:
    """Sign ``manifest.json``'s bytes with an Ed25519 private key (PEM, unencrypted)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    d = Path(directory)
    key = _load_key(private_key_pem, load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TensorfabError(f"--sign-key {private_key_pem}: not an Ed25519 private key")
    signature = key.sign((d / MANIFEST_FILE).read_bytes())
    write_text_atomic(d / SIGNATURE_FILE, signature.hex() + "\n")
    return d / SIGNATURE_FILE


def verify_signature(directory: str | Path, public_key_pem: Path) -> None:
    """Refuse unless ``manifest.sig`` is a valid signature of the manifest by that key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    d = Path(directory)
    key = _load_key(public_key_pem, load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise TensorfabError(f"--trusted-key {public_key_pem}: not an Ed25519 public key")
    if not (d / SIGNATURE_FILE).is_file():
        raise TensorfabError(f"{d}: no {SIGNATURE_FILE}: the package is not signed")
    try:
        signature = bytes.fromhex((d / SIGNATURE_FILE).read_text().strip())
        key.verify(signature, (d / MANIFEST_FILE).read_bytes())
    except (ValueError, InvalidSignature):
        raise TensorfabError(
            f"{d / SIGNATURE_FILE}: signature does not verify with {public_key_pem}"
        ) from None


def _load_key(path: Path, loader: Any, **kwargs: Any) -> Any:
    try:
        return loader(Path(path).read_bytes(), **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise TensorfabError(f"{path}: cannot read the key ({exc})") from None
