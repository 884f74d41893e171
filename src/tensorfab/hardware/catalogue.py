"""The GPU catalogue (``gpus.yaml`` in this package): datasheet figures, prices, sources.

One data file holds every datasheet figure tensorfab uses: the peaks beside MFU
(``peaks.datasheet_peak_tflops``) and the GPUs ``tensorfab advise`` models. Each entry
names where its figures come from and when they were checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from tensorfab.errors import TensorfabError

CATALOGUE_FILE = "gpus.yaml"
_FIELDS = ("id", "name", "match", "tflops", "memory_gb", "bandwidth_gb_s", "interconnect")


@dataclass(frozen=True)
class Gpu:
    """One catalogue entry; ``tflops`` holds dense peaks of the precisions it has."""

    id: str
    name: str
    match: tuple[str, ...]
    tflops: dict[str, float]
    memory_gb: float
    bandwidth_gb_s: float
    interconnect: str
    tdp_w: float
    price_usd_h: float
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def precisions(self) -> list[str]:
        return list(self.tflops)

    def matches(self, device_name: str) -> bool:
        """Whether one of ``match`` is a whole word of ``device_name`` ("L4" is not "L40S")."""
        return any(
            re.search(rf"(?<![A-Za-z0-9]){re.escape(p)}(?![A-Za-z0-9])", device_name, re.I)
            for p in self.match
        )


def _entry(raw: dict[str, Any], where: str) -> Gpu:
    missing = [k for k in (*_FIELDS, "tdp_w", "price_usd_h", "sources") if k not in raw]
    if missing:
        raise TensorfabError(f"{where}: missing {', '.join(missing)}")
    return Gpu(
        id=str(raw["id"]),
        name=str(raw["name"]),
        match=tuple(str(m) for m in raw["match"]),
        tflops={str(k): float(v) for k, v in raw["tflops"].items()},
        memory_gb=float(raw["memory_gb"]),
        bandwidth_gb_s=float(raw["bandwidth_gb_s"]),
        interconnect=str(raw["interconnect"]),
        tdp_w=float(raw["tdp_w"]),
        price_usd_h=float(raw["price_usd_h"]),
        sources={str(k): str(v) for k, v in raw["sources"].items()},
    )


def parse_catalogue(text: str, where: str = CATALOGUE_FILE) -> tuple[Gpu, ...]:
    """Catalogue entries from YAML text, in file order (the order names are matched in)."""
    data = yaml.safe_load(text) or {}
    gpus = tuple(_entry(raw, f"{where}: gpus[{i}]") for i, raw in enumerate(data["gpus"]))
    ids = [g.id for g in gpus]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TensorfabError(f"{where}: duplicate GPU ids {', '.join(duplicates)}")
    return gpus


@cache
def load_catalogue() -> tuple[Gpu, ...]:
    """The catalogue shipped with the package."""
    text = resources.files("tensorfab.hardware").joinpath(CATALOGUE_FILE).read_text()
    return parse_catalogue(text)


# A board that is not the catalogue's though its name holds an entry's pattern: a MIG slice
# ("NVIDIA H100 80GB HBM3 MIG 1g.10gb": a seventh of the SMs and an eighth of the memory),
# a laptop part (another chip under the desktop name) and the RTX 4090 D (the China
# variant: 14,592 CUDA cores of the 4090's 16,384, so 11 % below its peaks).
_OTHER_BOARD = re.compile(r"(?<![A-Za-z0-9])(MIG|Laptop|RTX 4090 D)(?![A-Za-z0-9])", re.I)
# Form factors a device name and an entry's name state: a PCIe board has another power
# limit, clock and often bandwidth than the SXM one of the same name
_FORM = re.compile(r"(?<![A-Za-z0-9])(PCIe|SXM|NVL)\d*(?![A-Za-z0-9])", re.I)


def _forms(name: str) -> set[str]:
    return {m.upper() for m in _FORM.findall(name)}


def _same_form(device_forms: set[str], gpu: Gpu) -> bool:
    """Whether the entry's form factor agrees with the device name's (or either is unsaid)."""
    own = _forms(gpu.name)
    return not device_forms or not own or bool(device_forms & own)


def find_gpu(device_name: str) -> Gpu | None:
    """The first entry whose pattern is a whole word of ``device_name``; None if unknown.

    Figures are only ever another board's when None is answered instead: a MIG slice, a
    laptop part or the RTX 4090 D (``_OTHER_BOARD``) matches no entry, and neither does a
    name whose form factor the entry's name contradicts ("NVIDIA A100 80GB PCIe" and
    "Tesla V100-PCIE-32GB" are not the catalogue's SXM boards: their power, clocks and, for
    the A100, bandwidth differ). The datasheet peak beside MFU (``peaks.py``) and
    ``advise --calibrate`` both read this, so a slice's MFU says "n/a" rather than a
    fraction of a whole H100's peak, and its measurements correct no whole GPU."""
    if _OTHER_BOARD.search(device_name):
        return None
    forms = _forms(device_name)
    found = (g for g in load_catalogue() if g.matches(device_name) and _same_form(forms, g))
    return next(found, None)


def gpu_by_id(gpu_id: str, field_name: str = "--gpus") -> Gpu:
    """The entry with ``gpu_id``; an unknown id is the user's error, listing the known ones."""
    for gpu in load_catalogue():
        if gpu.id == gpu_id.strip().lower():
            return gpu
    known = ", ".join(g.id for g in load_catalogue())
    raise TensorfabError(f"{field_name}: unknown GPU {gpu_id!r}; the catalogue has {known}")
