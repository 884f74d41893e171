"""glibc malloc keeping freed memory: a big tensor freed and made again is not page-faulted in
again (the kernel's minor faults count it), and the runtime does it on a CPU only."""

from __future__ import annotations

import resource

import pytest
import torch

from tensorfab.engine.runtime import Runtime
from tensorfab.hardware.host_memory import _mallopt, keep_freed_memory, memory_kept

pytestmark = pytest.mark.skipif(_mallopt() is None, reason="glibc's mallopt only")

PAGES = 16384  # a 64 MB tensor: 16,384 pages of 4 KB; 2 MB huge pages: 32


def _faults_of_a_fresh_tensor() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(PAGES * 1024)  # float32: 4 bytes each, every page written
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_freed_tensor_is_made_again_without_page_faults() -> None:
    assert keep_freed_memory() == {
        "M_MMAP_MAX": 0,
        "M_TRIM_THRESHOLD": 2**31 - 1,
        "M_TOP_PAD": 64 << 20,
    }
    assert memory_kept()
    for _ in range(2):
        _faults_of_a_fresh_tensor()  # the heap grows to hold it (twice, seen on glibc 2.36)
    assert _faults_of_a_fresh_tensor() < 32  # reused: not one fault per page or huge page


def test_the_runtime_keeps_memory_on_a_cpu_only() -> None:
    cpu = Runtime(torch.device("cpu"), "fp32")
    assert cpu.keep_host_memory() == keep_freed_memory()
    assert cpu.describe()["host_memory"] == keep_freed_memory()
    meta = Runtime(torch.device("meta"), "fp32")
    assert meta.keep_host_memory() is None and meta.describe()["host_memory"] is None
