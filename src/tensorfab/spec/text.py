"""A file's bytes as text, a bad byte named by its line and column.

Below every layer that reads text people write: the spec's YAML (job specs, a model
repository's ``config.yaml``) and the data layer's formats (``data.text_types``). An image
given where a spec or a text file belongs is one line naming the place, never a decoder
traceback.
"""

from __future__ import annotations

from pathlib import Path

from tensorfab.errors import TensorfabError


def decode_text(data: bytes, path: str | Path, encoding: str = "utf-8") -> str:
    """``data`` decoded; a byte ``encoding`` cannot read is one error naming ``path:line``."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        name = "UTF-8" if encoding.lower().startswith("utf") else encoding
        raise TensorfabError(
            f"{path}:{line}: invalid {name} (byte 0x{data[exc.start]:02x} at column {column})"
        ) from None
