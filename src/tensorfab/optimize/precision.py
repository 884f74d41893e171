"""``precision: auto`` for the PyTorch inference runtime: bf16 where a forward of the model pays.

On a CPU the rule is training's (``hardware/autoprecision.py``: the bf16 matmul peak at least
1.5x fp32, then a probe at least 1.2x faster), with the probe timing the inference graph
itself as the torch backend runs it (``runtime.torch_forward``: fp32, or weights in bf16
under autocast) on the task's example inputs; the choice is cached under its own key. A GPU
takes the hardware layer's ``auto`` (bf16 from Ampere on, else fp16). ``tensorfab export``
resolves the ``torch-auto`` variant with it and records the choice in its report, and
``bench infer --model`` times the chosen runtime beside the others.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.hardware import peak_cache_key, resolve_device, resolve_precision
from tensorfab.hardware.autoprecision import (
    PrecisionChoice,
    Probe,
    choose_cpu_precision,
    probe_steps,
)
from tensorfab.optimize.runtime import TorchSettings, torch_forward
from tensorfab.package import LoadedPackage

PROBE_BATCH = 32
PROBE_SEQ = 32  # tokens per sequence in the probe (fixed-size inputs ignore it)


def inference_key(device: torch.device, pkg: LoadedPackage, batch: int, seq: int) -> str:
    """Device, threads and torch (the peak's key), then the model and the probed shape."""
    model = pkg.meta.get("model", {})
    shape = json.dumps(model.get("args", {}), sort_keys=True, default=str)
    where = f"{peak_cache_key(device)} | inference {model.get('name')} {shape}"
    return f"{where} | {batch}x{seq} | cpu time"  # wall-time probes' choices: probed again


def forward_probe(pkg: LoadedPackage, batch: int = PROBE_BATCH, seq: int = PROBE_SEQ) -> Probe:
    """Median CPU seconds of one forward of the package's inference graph on the CPU, fp32 vs
    bf16, as the torch backend runs each; the package's own model is left as it was."""
    from tensorfab.optimize.export import inference_graph

    def run() -> dict[str, float]:  # only on a cache miss: the model copies are made here
        device = torch.device("cpu")
        pkg.model.cpu().eval()
        graph = inference_graph(pkg)[0]
        forwards = {
            p: torch_forward(copy.deepcopy(graph), TorchSettings(precision=p), device)
            for p in ("fp32", "bf16")
        }
        feed = pkg.task.example_feed([seq] * batch, np.random.default_rng(0))
        args = [torch.from_numpy(feed[s.name]) for s in pkg.task.signature()[0]]

        @torch.inference_mode()
        def step(precision: str) -> None:
            forwards[precision](*args)

        return probe_steps(step)

    return run


def choose_inference_precision(pkg: LoadedPackage, device: str = "cpu") -> PrecisionChoice:
    """What ``auto`` is for the torch runtime on ``device``, and why (cached on a CPU)."""
    dev = resolve_device(device, "--device")
    if dev.type != "cpu":
        chosen = resolve_precision("auto", dev, "--device")
        return PrecisionChoice(chosen, f"auto on {dev.type}: the device's fastest native type")
    key = inference_key(dev, pkg, PROBE_BATCH, PROBE_SEQ)
    return choose_cpu_precision(dev, key, forward_probe(pkg), what="forward")


AUTO_VARIANT = "torch-auto"


def resolve_auto_variant(variants: tuple[str, ...], choice: PrecisionChoice) -> tuple[str, ...]:
    """``torch-auto`` in ``--variants`` becomes the torch variant of the chosen precision
    (``torch-bf16``, ``torch-fp16``); fp32 needs none, the model package is the fp32 one."""
    if AUTO_VARIANT not in variants:
        return variants
    chosen = f"torch-{choice.precision}" if choice.precision != "fp32" else None
    picked = (chosen if v == AUTO_VARIANT else v for v in variants)
    out = tuple(dict.fromkeys(v for v in picked if v is not None))
    if not out:
        raise TensorfabError(
            f"--variants {AUTO_VARIANT}: auto chose fp32 here ({choice.reason}); the model "
            "package itself is the fp32 PyTorch model, so there is nothing to export: serve "
            "the package, or add an ONNX variant"
        )
    return out
