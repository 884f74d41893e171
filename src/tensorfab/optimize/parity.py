"""Parity of an exported variant against the fp32 PyTorch model on held-out data.

Both run over the same batches; the report gives the max and mean absolute logit
difference, how often the predictions agree, and the task metric of each with its delta.
A variant whose metric drops by more than ``tolerance`` is marked failed (not to be shipped).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tensorfab.optimize.export import ExportedModel
from tensorfab.package import LoadedPackage
from tensorfab.tasks.eval_data import eval_batches, load_eval_split


def _session(model: ExportedModel) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])


def _onnx_logits(session: Any, names: tuple[str, ...], batch: tuple[torch.Tensor, ...]) -> Any:
    # image batches: (images, labels); text batches: (index, ids, mask, labels)
    inputs = batch[:1] if names == ("images",) else batch[1:3]
    feed = {n: t.cpu().numpy() for n, t in zip(names, inputs, strict=True)}
    return torch.from_numpy(session.run(["logits"], feed)[0])


@torch.no_grad()
def parity_report(
    pkg: LoadedPackage,
    variants: list[ExportedModel],
    *,
    data_path: str | None = None,
    max_samples: int = 512,
    tolerance: float = 0.01,
) -> dict[str, Any]:
    """Compare every variant with the PyTorch fp32 model on up to ``max_samples`` examples."""
    data, source = load_eval_split(pkg.meta, data_path)
    data = (
        data.subset(torch.arange(min(len(data), max_samples)))
        if hasattr(data, "subset")
        else data[:max_samples]
    )
    batches = list(eval_batches(pkg.task, data, 64, torch.device("cpu")).epoch(0))
    pkg.model.cpu().eval()
    reference = [pkg.task.logits(pkg.model, b).float() for b in batches]
    base = pkg.task.eval_scores(
        [pkg.task.eval_step(r, b) for r, b in zip(reference, batches, strict=True)]
    )
    metric = pkg.task.metric_names[0]
    rows = {}
    for variant in variants:
        session = _session(variant)
        got = [_onnx_logits(session, variant.input_names, b) for b in batches]
        rows[variant.variant] = _compare(
            pkg, batches, reference, got, base[metric], metric, tolerance
        )
    return {
        "data": source,
        "n": len(data),
        "metric": metric,
        "reference": base[metric],
        "tolerance": tolerance,
        "variants": rows,
    }


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
    diffs = np.concatenate([(r - g).abs().flatten().numpy() for r, g in pairs])
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
