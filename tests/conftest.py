"""Shared fixtures: where ../shared is. Helper functions live in ``testkit.py``: test modules
import them by that name (``conftest`` is ambiguous once a sub-folder has its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"{data} not found: the real data sets lie in ../shared beside the repo")
    return data
