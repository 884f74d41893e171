"""glibc malloc keeping freed memory: a big tensor freed and made again is not page-faulted in
again (the kernel's minor faults count it), and the runtime does it on a CPU only."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tensorfab.engine.runtime import Runtime
from tensorfab.hardware import host_memory
from tensorfab.hardware.host_memory import _mallopt, keep_freed_memory, memory_kept

pytestmark = pytest.mark.skipif(_mallopt() is None, reason="glibc's mallopt only")

# In a fresh interpreter (this process's heap is whatever earlier tests left) and without
# torch (seconds to import): the fewest page faults of a 64 MB block malloc'd, written and
# freed four more times after three, with or without keep_freed_memory (kept: a block can
# still land on heap pages never touched yet).
PROBE = """
import ctypes, importlib.util, resource, sys
if sys.argv[1] == "keep":
    spec = importlib.util.spec_from_file_location("host_memory", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)  # 16,384 pages of 4 KB, every one written
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
[faults() for _ in range(3)]  # the heap grows to hold it (its pad is touched first)
print(min(faults() for _ in range(4)))
"""


def _faults(mode: str) -> int:
    run = [sys.executable, "-c", PROBE, mode, host_memory.__file__]
    return int(subprocess.run(run, capture_output=True, text=True, check=True).stdout)


def test_a_freed_tensor_is_made_again_without_page_faults() -> None:
    assert keep_freed_memory() == {
        "M_MMAP_MAX": 0,
        "M_TRIM_THRESHOLD": 2**31 - 1,
        "M_TOP_PAD": 64 << 20,
    }
    assert memory_kept()
    assert _faults("default") >= 16384 // 512  # mmap'd afresh: a fault per page (or 2 MB page)
    assert _faults("keep") < 16384 // 512  # reused from the heap


def test_the_runtime_keeps_memory_on_a_cpu_only() -> None:
    cpu = Runtime(torch.device("cpu"), "fp32")
    assert cpu.keep_host_memory() == keep_freed_memory()
    assert cpu.describe()["host_memory"] == keep_freed_memory()
    meta = Runtime(torch.device("meta"), "fp32")
    assert meta.keep_host_memory() is None and meta.describe()["host_memory"] is None
