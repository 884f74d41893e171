"""Repository model names and version numbers for ``tensorfab export``: never a path out of
the repository, never a version written twice, and the next free version by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.optimize.export import ONNX_VARIANTS, TORCH_VARIANTS
from tensorfab.package.repository import (
    VARIANTS,
    check_model_name,
    next_version,
    report_path,
    resolve_version,
    variant_models,
    version_dir,
)


@pytest.mark.parametrize("name", ["ner", "digits-lenet", "bert_v2.1", "A-1"])
def test_plain_model_names_are_accepted(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".", "..", "", "a b", "x\\y", "/abs"])
def test_names_that_are_paths_or_odd_are_refused(name: str) -> None:
    with pytest.raises(TensorfabError) as info:
        check_model_name(name)
    assert str(info.value) == (
        f"--name {name!r}: a model name is letters, digits, '_', '-' and '.' "
        "(no path separators, not '.' or '..')"
    )


def test_next_version_follows_every_variant_and_report(tmp_path: Path) -> None:
    assert next_version(tmp_path, "ner") == 1  # nothing there, not even the repository
    (tmp_path / "ner" / "1").mkdir(parents=True)
    (tmp_path / "ner-int8-dynamic" / "3").mkdir(parents=True)
    (tmp_path / "nerd" / "9").mkdir(parents=True)  # another model: does not count
    assert next_version(tmp_path, "ner") == 4
    report_path(tmp_path, "ner", 6).write_text("{}")  # an export of torch variants only
    assert next_version(tmp_path, "ner") == 7


def test_an_explicit_version_that_exists_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ner-int8-static" / "2").mkdir(parents=True)
    assert resolve_version(tmp_path, "ner", ("fp32",), 2) == 2  # fp32 has no version 2
    with pytest.raises(TensorfabError) as info:
        resolve_version(tmp_path, "ner", ("fp32", "int8-static"), 2)
    assert str(info.value) == (
        f"{tmp_path / 'ner-int8-static' / '2'} exists; pick another --version or remove it"
    )
    (tmp_path / "ner").mkdir()
    report_path(tmp_path, "ner", 5).write_text("{}")
    with pytest.raises(TensorfabError, match=r"export-report-5.json exists; pick another"):
        resolve_version(tmp_path, "ner", ("torch-bf16",), 5)


@pytest.mark.parametrize("version", [0, -1])
def test_versions_start_at_one(version: int, tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        resolve_version(tmp_path, "ner", ("fp32",), version)
    assert str(info.value) == (
        f"--version must be at least 1 (Triton's versions start at 1), not {version}"
    )


def test_layout_variants_are_exports_and_the_base_one_has_the_plain_name(tmp_path: Path) -> None:
    assert (*ONNX_VARIANTS, *TORCH_VARIANTS) == VARIANTS
    assert version_dir(tmp_path, "ner", "fp32", 2) == tmp_path / "ner" / "2"
    assert version_dir(tmp_path, "ner", "int8-static", 2) == tmp_path / "ner-int8-static" / "2"
    assert variant_models(tmp_path, "ner")[:2] == [tmp_path / "ner", tmp_path / "ner-int8-dynamic"]
