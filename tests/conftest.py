"""Shared fixtures: where ../shared is. Helper functions live in ``testkit.py``: test modules
import them by that name (``conftest`` is ambiguous once a sub-folder has its own)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_configure(config: pytest.Config) -> None:
    """One fresh cache of measured peaks and precision choices for the whole session
    (subprocesses inherit it): no test reads what earlier runs on this machine cached.
    Matplotlib's font list too: a user cache built while a matplotlib was half installed
    lacks its bundled fonts, and every plot then logs findfont fallbacks to stderr."""
    del config
    if "TENSORFAB_CACHE_DIR" not in os.environ:
        os.environ["TENSORFAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="tensorfab-cache-")
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="tensorfab-mpl-")


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"{data} not found: the real data sets lie in ../shared beside the repo")
    return data
