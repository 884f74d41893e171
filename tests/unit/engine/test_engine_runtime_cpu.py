"""CPU runtime settings: ``--profile`` off costs nothing (its files are checked by the CPU
precision integration test: starting torch.profiler takes seconds), channels-last layout."""

from __future__ import annotations

import torch

from tensorfab.engine.profiling import profiled


def test_no_profile_without_a_folder() -> None:
    with profiled(None, torch.device("cpu")) as prof:
        assert prof is None


def test_channels_last_on_a_cpu_by_default() -> None:
    from tensorfab.engine.runtime import Runtime

    def model() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Linear(2, 2))

    cl = torch.channels_last
    auto = Runtime(torch.device("cpu"), "fp32")
    placed = auto.place_model(model(), "auto")
    assert auto.channels_last and placed[0].weight.is_contiguous(memory_format=cl)
    assert auto.describe()["channels_last"] is True
    off = Runtime(torch.device("cpu"), "fp32")
    assert not off.place_model(model(), "off")[0].weight.is_contiguous(memory_format=cl)
    assert off.channels_last is False
