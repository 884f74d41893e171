"""The step meter: real-token counts of padded batches, warm-up, epoch boundaries."""

from __future__ import annotations

import torch

from tensorfab.bench.meter import (
    MeteredBatches,
    PeakMemory,
    StepMeter,
    count_images,
    count_sequences,
)
from tensorfab.data.sequence_batching import SequenceBatches

CPU = torch.device("cpu")


def test_real_tokens_of_a_padded_batch() -> None:
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    found = count_sequences(mask)
    assert found.samples == 3
    assert found.lengths.tolist() == [3, 5, 2]
    assert found.padded_tokens == 15


def test_real_tokens_of_an_engine_batch() -> None:
    ids = [[101, 7, 102], [101, 7, 8, 9, 102], [101, 102]]
    labels = [[-100, 1, -100], [-100, 1, 2, 0, -100], [-100, -100]]
    batches = SequenceBatches(ids, labels, 3, device=CPU, shuffle=False)
    batch = next(batches.epoch(0))
    assert batch[1].shape == (3, 5)  # padded to the longest
    found = count_sequences(batch[2])
    assert sorted(found.lengths.tolist()) == [2, 3, 5]
    assert found.padded_tokens == 15


def _sequence_batch(lengths: list[int]) -> tuple[torch.Tensor, ...]:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    return (torch.arange(len(lengths)), torch.zeros_like(mask), mask, torch.zeros_like(mask))


def test_meter_skips_warmup_and_sums_lengths() -> None:
    batches = [_sequence_batch([9, 9]), _sequence_batch([3, 5]), _sequence_batch([2])]
    meter = StepMeter(CPU, lambda b: count_sequences(b[2]), warmup=1, total=3)
    assert list(meter.wrap(batches)) == batches
    meter.stop()
    assert len(meter.step_times_s()) == 2  # 3 steps, the first is warm-up
    assert meter.samples == 3
    assert meter.tokens() == (10.0, 9 + 25 + 4)
    assert meter.padded_tokens == 10 + 2


def test_meter_spans_epochs_and_an_early_stop() -> None:
    class Source:
        def __len__(self) -> int:
            return 2

        def epoch(self, epoch: int, start: int = 0):
            for i in range(start, 2):
                yield (torch.zeros(4, 1), torch.full((4,), epoch * 10 + i))

    steps = []
    meter = StepMeter(CPU, count_images, warmup=0, total=3, on_step=lambda: steps.append(1))
    source = MeteredBatches(Source(), meter)
    seen = [b[1][0].item() for b in source.epoch(0)]
    for batch in source.epoch(1):  # the loop stops after one batch (max_steps)
        seen.append(batch[1][0].item())
        break
    meter.stop()
    assert seen == [0, 1, 10]
    assert len(meter.step_times_s()) == 3  # one per batch, epoch boundary included once
    assert all(t >= 0 for t in meter.step_times_s())
    assert meter.samples == 12
    assert meter.tokens() is None  # images: no token count
    assert len(source) == 2


def test_peak_memory_on_cpu_is_the_rss_peak() -> None:
    with PeakMemory(CPU) as memory:
        block = torch.ones(8 * 2**20)  # 32 MB touched
        block += 1
    assert memory.kind.startswith("rss_peak")
    assert memory.bytes is not None and memory.bytes > 32 * 2**20


def _fake_gpu(monkeypatch, energy: list[int | None], power: float | None) -> list[tuple]:
    """GPU 2 with UUID 'u2' as NVML would show it; returns the (index, uuid) each read used."""
    import tensorfab.bench.meter as meter

    used: list[tuple] = []
    monkeypatch.setattr(meter, "cuda_index", lambda device: 2)
    monkeypatch.setattr(meter, "cuda_uuid", lambda index: f"u{index}")

    def read_energy(index: int, uuid: str | None) -> int | None:
        used.append((index, uuid))
        return energy.pop(0)

    def readings(index: int, uuid: str | None) -> dict:
        used.append((index, uuid))
        return {"power_w": power}

    monkeypatch.setattr(meter, "energy_mj", read_energy)
    monkeypatch.setattr(meter, "gpu_readings", readings)
    return used


def test_energy_is_the_counters_difference_on_the_blocks_gpu(monkeypatch) -> None:
    from tensorfab.bench.meter import PowerSampler

    used = _fake_gpu(monkeypatch, energy=[10_000, 250_000], power=300.0)
    with PowerSampler(torch.device("cuda")) as power:
        pass
    assert power.energy_j(seconds=99.0) == 240.0  # (250,000 - 10,000) mJ, not 300 W x 99 s
    assert used == [(2, "u2"), (2, "u2")] and power.watts == []


def test_without_a_counter_power_is_sampled_from_the_same_gpu(monkeypatch) -> None:
    import time

    from tensorfab.bench.meter import PowerSampler

    used = _fake_gpu(monkeypatch, energy=[None], power=200.0)
    with PowerSampler(torch.device("cuda"), interval_s=0.005) as power:
        time.sleep(0.03)
    assert power.watts and set(power.watts) == {200.0}
    assert power.energy_j(seconds=2.0) == 400.0
    assert set(used) == {(2, "u2")}  # the sampling thread read GPU 2, not its own GPU 0


def test_no_energy_on_a_cpu() -> None:
    from tensorfab.bench.meter import PowerSampler

    with PowerSampler(CPU) as power:
        pass
    assert power.energy_j(seconds=1.0) is None


def test_cpu_time_counts_work_and_not_waiting() -> None:
    import time

    meter = StepMeter(CPU, count_images, warmup=0, total=2)
    for i, _ in enumerate(meter.wrap([(torch.zeros(1, 1),), (torch.zeros(1, 1),)])):
        if i == 0:
            time.sleep(0.05)  # waiting: wall time, no CPU time
        else:
            end = time.process_time() + 0.05
            while time.process_time() < end:  # working: CPU time
                pass
    meter.stop()
    wall, cpu = meter.step_times_s(), meter.step_cpu_times_s()
    assert len(cpu) == len(wall) == 2
    assert wall[0] >= 0.05 and cpu[0] < 0.025
    assert 0.05 <= cpu[1] <= wall[1] + 0.01
