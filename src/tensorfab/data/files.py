"""Reading a data file's bytes, with the one error message every format uses."""

from __future__ import annotations

from pathlib import Path

from tensorfab.errors import TensorfabError


def read_file_bytes(path: Path) -> bytes:
    """The whole file; a missing or unreadable file is one error naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TensorfabError(f"{path}: file not found") from None
    except OSError as exc:
        raise TensorfabError(f"{path}: cannot read ({exc.strerror or exc})") from None
