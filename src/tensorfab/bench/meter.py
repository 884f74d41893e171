"""Per-step timing, token counts, peak memory and energy of a training loop, from outside it.

A :class:`StepMeter` wraps the loop's batch iterator: it stamps the time each time the loop
asks for its next batch, so one step is everything from one fetch to the next (data, forward,
backward, optimizer). On a GPU the stamps are CUDA events, read once at the end, so the meter
adds no host-device sync to the loop it measures. Token counts stay on the device for the
same reason. The same meter wraps the baseline's ``DataLoader`` and the engine's batches, so
both sides are measured by one piece of code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tensorfab.hardware import cuda_index, cuda_uuid, energy_mj, gpu_readings


@dataclass
class BatchCount:
    """What one batch holds: samples, and for sequences the real lengths (device tensors)."""

    samples: int
    lengths: torch.Tensor | None = None  # [B] real (non-padding) tokens per sequence
    padded_tokens: int = 0  # B * T as computed, padding included


def count_images(batch: Any) -> BatchCount:
    """Image batches: ``(images, labels)`` tuples, whatever the loader."""
    return BatchCount(len(batch[0]))


def count_sequences(mask: torch.Tensor) -> BatchCount:
    """A padded batch of sequences from its attention mask [B, T] (1 = real token)."""
    return BatchCount(mask.shape[0], mask.sum(dim=1), mask.numel())


class _Clock:
    """Time stamps: CUDA events (no sync until read) on a GPU, perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stamps: list[Any] = []
        self.cpu_stamps: list[float] = []  # the process's CPU time (all its threads)

    def stamp(self) -> None:
        self.cpu_stamps.append(time.process_time())
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps.append(event)
        else:
            self.stamps.append(time.perf_counter())

    def pop(self) -> None:
        self.stamps.pop()
        self.cpu_stamps.pop()

    def cpu_durations_s(self) -> list[float]:
        """The process's CPU seconds per step: on a shared CPU, what a step costs when other
        jobs take the core away (its wall time then counts their time too)."""
        return [b - a for a, b in zip(self.cpu_stamps, self.cpu_stamps[1:], strict=False)]

    def durations_s(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            pairs = zip(self.stamps, self.stamps[1:], strict=False)
            return [a.elapsed_time(b) / 1000.0 for a, b in pairs]
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


class StepMeter:
    """Step times and sample/token counts of the steps after ``warmup`` (of ``total``)."""

    def __init__(
        self,
        device: torch.device,
        count: Callable[[Any], BatchCount],
        warmup: int,
        total: int,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.device, self.count, self.warmup, self.total = device, count, warmup, total
        self.on_step = on_step
        self.clock = _Clock(device)
        self.steps = 0  # batches handed to the loop
        self.samples = 0
        self.padded_tokens = 0
        self.token_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.token_sq_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.has_tokens = False

    def wrap(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Yield ``batches`` unchanged, stamping the start of each fetch."""
        it = iter(batches)
        while True:
            self.clock.stamp()
            try:
                batch = next(it)
            except StopIteration:  # end of an epoch: the next fetch (or stop) ends the step
                self.clock.pop()
                return
            self._add(batch)
            yield batch

    def begin_step(self, batch: Any) -> None:
        """Stamp the start of a step of ``batch``, for a loop whose iterator is its own
        (``transformers.Trainer``: called from its ``on_step_begin``; the step then lasts
        until the next one begins, the next batch's fetch included)."""
        self.clock.stamp()
        self._add(batch)

    def _add(self, batch: Any) -> None:
        self.steps += 1
        if self.on_step is not None:
            self.on_step()
        if self.steps <= self.warmup:
            return
        found = self.count(batch)
        self.samples += found.samples
        if found.lengths is not None:
            self.has_tokens = True
            lengths = found.lengths.to(torch.float64)
            self.token_sum += lengths.sum()
            self.token_sq_sum += (lengths * lengths).sum()
            self.padded_tokens += found.padded_tokens

    def stop(self) -> None:
        """Close the last step (the loop stopped asking for batches)."""
        if len(self.clock.stamps) == self.steps:
            self.clock.stamp()

    def step_times_s(self) -> list[float]:
        """Durations of the timed steps (warm-up steps dropped)."""
        return self.clock.durations_s()[self.warmup :]

    def step_cpu_times_s(self) -> list[float]:
        """The process's CPU seconds of the timed steps."""
        return self.clock.cpu_durations_s()[self.warmup :]

    def tokens(self) -> tuple[float, float] | None:
        """(sum of real lengths, sum of squared real lengths) over timed steps; None: images."""
        if not self.has_tokens:
            return None
        return float(self.token_sum.item()), float(self.token_sq_sum.item())


class MeteredBatches:
    """An engine batch source (``epoch(epoch, start)``, ``len``) seen through a meter."""

    def __init__(self, inner: Any, meter: StepMeter) -> None:
        self.inner, self.meter = inner, meter

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # batch_size, num_samples, ... of the inner source
        return getattr(self.inner, name)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Any]:
        return self.meter.wrap(self.inner.epoch(epoch, start_batch))


class PeakMemory:
    """Peak memory while a block runs: CUDA max allocated, or the process's peak RSS.

    On Linux the RSS high-water mark can be reset (``/proc/self/clear_refs``), so the CPU
    figure belongs to the block; where it cannot, it is the peak since the process started
    and ``kind`` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None
        self.kind = "n/a"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
        elif _reset_rss_peak():
            self.kind = "rss_peak"
        else:
            self.kind = "rss_peak_since_process_start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.bytes = _rss_peak_bytes()
            if self.bytes is None:
                self.kind = "n/a"


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _rss_peak_bytes() is not None


def _rss_peak_bytes() -> int | None:
    with suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:  # not a Unix system
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class PowerSampler:
    """The GPU energy a block used, from NVML; None without NVML.

    NVML's energy counter (Volta and newer) read before and after gives the energy
    exactly. Where the board has no counter, power is sampled in a thread every
    ``interval_s`` and its mean times the block's seconds estimates it. The GPU's index and
    UUID are worked out on the caller's thread: a new thread's current CUDA device is GPU 0,
    whatever device the block runs on.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.05) -> None:
        self.device, self.interval_s = device, interval_s
        self.watts: list[float] = []
        self._gpu: tuple[int, str | None] | None = None
        self._energy_mj: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PowerSampler:
        if self.device.type != "cuda":
            return self
        index = cuda_index(self.device)
        self._gpu = (index, cuda_uuid(index))
        start = energy_mj(*self._gpu)
        if start is not None:
            self._energy_mj = [start]
        elif self._read() is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> float | None:
        assert self._gpu is not None
        readings = gpu_readings(*self._gpu)
        return None if readings is None else readings.get("power_w")

    def _run(self) -> None:
        while not self._stop.is_set():
            watts = self._read()
            if watts is not None:
                self.watts.append(float(watts))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._energy_mj and self._gpu is not None:
            end = energy_mj(*self._gpu)
            if end is not None:
                self._energy_mj.append(end)

    def energy_j(self, seconds: float) -> float | None:
        """The counter's difference, else mean sampled power times ``seconds``; None when
        nothing was read."""
        if len(self._energy_mj) == 2:
            return (self._energy_mj[1] - self._energy_mj[0]) / 1000.0
        if not self.watts:
            return None
        return sum(self.watts) / len(self.watts) * seconds
