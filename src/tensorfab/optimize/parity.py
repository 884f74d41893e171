"""Parity of an exported variant against the fp32 PyTorch model on held-out data.

Both run over the same batches; the report gives the max and mean absolute logit
difference, how often the predictions agree, and the task metric of each with its delta.
A variant whose metric drops by more than ``tolerance`` is marked failed (not to be shipped).
Each variant runs through :func:`~tensorfab.optimize.runtime.load_runtime`, exactly as the
server will run it; one that cannot run on the chosen device (fp16 or CUDA graphs on a CPU)
is listed as skipped with the reason, not failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.optimize.export import ExportedModel, unsupported_reason
from tensorfab.optimize.runtime import LoadedModel, load_reported_runtime
from tensorfab.package import LoadedPackage
from tensorfab.tasks.eval_data import eval_batches, load_eval_split

EVAL_BATCH = 64


def heldout_data(pkg: LoadedPackage, data_path: str | None, max_samples: int) -> tuple[Any, str]:
    """The first ``max_samples`` held-out examples the parity (and latency) reports use.

    ``tensorfab export`` reads them before it writes anything, so a wrong ``--data`` or
    ``--samples`` leaves the repository as it was.
    """
    if max_samples < 1:
        raise TensorfabError(f"--samples must be at least 1, not {max_samples}")
    data, source = load_eval_split(pkg.meta, data_path)
    return pkg.task.take_samples(data, torch.arange(min(len(data), max_samples))), source


@torch.no_grad()
def parity_report(
    pkg: LoadedPackage,
    variants: list[ExportedModel],
    *,
    data_path: str | None = None,
    max_samples: int = 512,
    tolerance: float = 0.01,
    device: str = "cpu",
    heldout: tuple[Any, str] | None = None,
) -> dict[str, Any]:
    """Compare every variant, run on ``device``, with the PyTorch fp32 model on the CPU, on
    up to ``max_samples`` examples (or on ``heldout``, read by :func:`heldout_data`)."""
    data, source = heldout or heldout_data(pkg, data_path, max_samples)
    batches = list(eval_batches(pkg.task, data, EVAL_BATCH, torch.device("cpu")).epoch(0))
    pkg.model.cpu().eval()
    reference = [pkg.task.logits(pkg.model, b).float() for b in batches]
    base = pkg.task.eval_scores(
        [pkg.task.eval_step(r, b) for r, b in zip(reference, batches, strict=True)]
    )
    metric = pkg.task.metric_names[0]
    rows = {}
    for variant in variants:
        runtime = _runtime_or_reason(variant, device)
        if isinstance(runtime, str):
            rows[variant.variant] = {"skipped": runtime, "passed": None}
            continue
        got = [torch.from_numpy(runtime(pkg.task.feed(b))) for b in batches]
        row = _compare(pkg, batches, reference, got, base[metric], metric, tolerance)
        rows[variant.variant] = {**row, **runtime.describe()}
    return {
        "data": source,
        "n": len(data),
        "metric": metric,
        "reference": base[metric],
        "tolerance": tolerance,
        "variants": rows,
    }


def _runtime_or_reason(variant: ExportedModel, device: str) -> LoadedModel | str:
    """The variant's runtime, or why it cannot run on ``device`` (say fp16 on a CPU)."""
    reason = unsupported_reason(variant, device)
    return reason or load_reported_runtime(variant.version_dir, variant.backend, device)


def _predictions(step: Any) -> list[int]:
    """Predicted labels of one eval_step output: (targets, preds) or [(index, true, pred)]."""
    if isinstance(step, tuple):
        return step[1].tolist()
    return [p for _, _, pred in step for p in pred]


def _compare(
    pkg: LoadedPackage,
    batches: list,
    reference: list,
    got: list,
    base: float,
    metric: str,
    tolerance: float,
) -> dict[str, Any]:
    pairs = list(zip(reference, got, strict=True))
    diffs = np.concatenate(
        [
            (pkg.task.compared(r, b) - pkg.task.compared(g, b)).abs().flatten().numpy()
            for (r, g), b in zip(pairs, batches, strict=True)
        ]
    )
    ref_steps = [pkg.task.eval_step(r, b) for r, b in zip(reference, batches, strict=True)]
    got_steps = [pkg.task.eval_step(g, b) for g, b in zip(got, batches, strict=True)]
    ref_pred = [p for s in ref_steps for p in _predictions(s)]
    got_pred = [p for s in got_steps for p in _predictions(s)]
    scores = pkg.task.eval_scores(got_steps)
    delta = scores[metric] - base
    # agreement over predictions that count (words for NER, not padding or sub-tokens)
    agreement = float(np.mean(np.array(ref_pred) == np.array(got_pred)))
    return {
        "max_abs_diff": float(diffs.max()),
        "mean_abs_diff": float(diffs.mean()),
        "agreement": agreement,
        metric: scores[metric],
        "delta": delta,
        "passed": delta >= -tolerance,
    }
