"""Committed benchmark results name no machine's paths: only paths relative to the repository
(``../shared/...``), so a result reads the same on every checkout (issue 21)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
# an absolute path of a machine: /tmp/..., /home/..., /work/..., C:\..., ~/...
MACHINE_PATH = re.compile(r"(?<![\w.:/])(/(tmp|home|work|root|Users|var|opt|mnt|srv)/|~/|[A-Z]:\\)")


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
    elif isinstance(value, str):
        yield where, value


def test_the_pattern_finds_machine_paths_and_leaves_relative_ones() -> None:
    found = [
        s
        for s in ("/tmp/x/run", "data: /home/a/b", "C:\\data", "~/.cache/x")
        if MACHINE_PATH.search(s)
    ]
    assert len(found) == 4
    kept = ["../shared/data/conll2003/valid.txt", "runs/x/model", "/v2/models/ner/infer", "a/tmp/b"]
    assert not [s for s in kept if MACHINE_PATH.search(s)]


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_json_results_hold_no_absolute_paths(path: Path) -> None:
    bad = [
        f"{where}: {s}"
        for where, s in _strings(json.loads(path.read_text()))
        if MACHINE_PATH.search(s)
    ]
    assert not bad, f"{path.name}: {bad[:3]}"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.md")), ids=lambda p: p.name)
def test_markdown_results_hold_no_absolute_paths(path: Path) -> None:
    lines = path.read_text().splitlines()
    bad = [f"{n}: {line}" for n, line in enumerate(lines, 1) if MACHINE_PATH.search(line)]
    assert not bad, f"{path.name}: {bad[:3]}"
