"""``--profile`` off costs nothing (the files are checked by the CPU precision integration
test: starting torch.profiler takes seconds, too long for a unit test)."""

from __future__ import annotations

import torch

from tensorfab.engine.profiling import profiled


def test_no_profile_without_a_folder() -> None:
    with profiled(None, torch.device("cpu")) as prof:
        assert prof is None
