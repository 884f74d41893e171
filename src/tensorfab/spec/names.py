"""Names that become one folder: a run under ``output.runs_dir``, a model in a repository.

Letters, digits, ``_``, ``-`` and ``.`` (what Triton allows for a model), and never ``.`` or
``..`` alone: a name is joined to a parent folder, and ``../x`` or ``/tmp/x`` would write
outside it (on a shared node, into another user's files).
"""

from __future__ import annotations

import re

PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
RULE = "letters, digits, '_', '-' and '.' (no path separators, not '.' or '..')"


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one folder name under its parent (see the module docstring)."""
    return bool(PLAIN_NAME.fullmatch(name)) and name not in (".", "..")


def plain_name(name: str) -> str:
    """``name`` if it is one folder name, else the ValueError the spec reports by field."""
    if not is_plain_name(name):
        raise ValueError(f"{name!r} is not a folder name: use {RULE}")
    return name
