"""Tabular classification: CSV rows -> numeric values + category codes -> logits.

Numeric columns travel raw (a missing value becomes the training mean) and are standardised
inside the inference graph with the mean and std fitted on the training split and recorded
in the package; each categorical column becomes a code into the vocabulary seen in training
(0: missing or unseen). With ``train.fairness`` the task fits per-group (randomised)
thresholds on the validation split once a model is saved (``tasks/tabular_fairness.py``:
demographic parity or equalized odds), stores them as ``fairness.json`` in the package and
applies them to the positive-class probability, outside the graph, wherever predictions are
decided (evaluate, predict, serve); inputs must then carry the sensitive column.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.batching import TensorBatches
from tensorfab.data.splits import stratified_split
from tensorfab.data.tabular import Table, TableSplits, column_kinds, read_records, read_table
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path
from tensorfab.metrics import classification_scores
from tensorfab.tasks.base import (
    OUTPUT,
    Feed,
    Inputs,
    Placement,
    ServingLimits,
    Signature,
    TensorSpec,
    TokenCount,
    Workload,
    every_output,
    no_hf_form,
)
from tensorfab.tasks.flops import counted_flops
from tensorfab.tasks.prediction import image_rows, softmax
from tensorfab.tasks.registry import TASKS
from tensorfab.tasks.robustness import scores_on
from tensorfab.tasks.tabular_fairness import DEFAULT_CUT, apply_thresholds, fit_thresholds
from tensorfab.tasks.tabular_fairness import FILE as FAIRNESS_FILE

PREDICT_BATCH = 4096
MAX_REQUEST_ROWS = 10_000
NUMERIC_NOISE = (0.0, 0.1, 0.3, 1.0)  # in training standard deviations


@dataclass(frozen=True, eq=False)
class TabularData:
    """Encoded rows: raw numeric values, category codes and labels (-1: none)."""

    numeric: torch.Tensor  # float32 [N, Nn]
    codes: torch.Tensor  # int64 [N, Nc]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> TabularData:
        return TabularData(self.numeric[index], self.codes[index], self.labels[index])


class _TableGraph(nn.Module):
    """numeric float [B, Nn] (raw) + codes int64 [B, Nc] -> logits, standardisation inside."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.model((numeric - self.mean) / self.std, categorical)


@dataclass
class TabularClassification:
    classes: list[str]
    numeric: list[str]  # numeric column names, in the graph's order
    vocab: dict[str, list[str]]  # categorical column -> its values (code = index + 1)
    mean: list[float]
    std: list[float]
    fairness: dict[str, Any] | None = None  # the fitted rule (fairness.json), if any
    name: str = "tabular-classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")
    _stats: tuple[torch.Tensor, torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._stats = (torch.tensor(self.mean), torch.tensor(self.std))

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.vocab]

    # --- encoding -----------------------------------------------------------------------
    def encode_rows(self, rows: list[dict[str, str | None]], where: list[str]) -> TabularData:
        """Cells by column name -> tensors; a number that is not one is an error at ``where``."""
        numeric = np.zeros((len(rows), len(self.numeric)), dtype=np.float32)
        codes = np.zeros((len(rows), len(self.vocab)), dtype=np.int64)
        index = {c: {v: i + 1 for i, v in enumerate(vals)} for c, vals in self.vocab.items()}
        for r, row in enumerate(rows):
            for j, col in enumerate(self.numeric):
                numeric[r, j] = self._number(row.get(col), j, f"{where[r]}: column {col!r}")
            for j, col in enumerate(self.vocab):
                codes[r, j] = index[col].get(str(row.get(col)), 0)
        labels = torch.full((len(rows),), -1, dtype=torch.long)
        return TabularData(torch.from_numpy(numeric), torch.from_numpy(codes), labels)

    def _number(self, cell: Any, j: int, where: str) -> float:
        if cell is None:
            return self.mean[j]
        try:
            return float(cell)
        except (TypeError, ValueError):
            raise TensorfabError(f"{where}: {cell!r} is not a number") from None

    def encode_table(self, table: Table) -> TabularData:
        """A labelled table in this task's encoding (labels must be the model's classes)."""
        rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
        data = self.encode_rows(rows, [f"{table.source} row {i + 1}" for i in range(len(rows))])
        labels = table.labels or []
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise TensorfabError(
                f"{table.source}: labels {unknown} are not among the model's {self.classes}"
            )
        index = torch.tensor([self.classes.index(x) for x in labels], dtype=torch.long)
        return TabularData(data.numeric, data.codes, index)

    # --- training and evaluation --------------------------------------------------------
    def inputs(self, numeric: torch.Tensor) -> torch.Tensor:
        mean, std = (t.to(numeric.device) for t in self._stats)
        return (numeric - mean) / std

    def logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(self.inputs(batch[0]), batch[1])

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), batch[2])

    def decide(self, logits: torch.Tensor | np.ndarray, codes: torch.Tensor) -> np.ndarray:
        """Class indices: argmax, or the fairness rule on the positive-class probability."""
        probs = softmax(logits)
        if self.fairness is None:
            return probs.argmax(-1)
        positive = self.classes.index(self.fairness["positive"])
        groups = self.groups(codes, self.fairness["sensitive"])
        draws = _draws(probs, codes)
        chosen = apply_thresholds(self.fairness, probs[:, positive], groups, draws)
        return np.where(chosen == 1, positive, 1 - positive)

    def groups(self, codes: torch.Tensor | np.ndarray, column: str) -> list[str]:
        """A categorical column's value per row ("?" where missing or unseen)."""
        j = list(self.vocab).index(column)
        values = self.vocab[column]
        return [values[c - 1] if c > 0 else "?" for c in np.asarray(codes)[:, j].tolist()]

    def eval_step(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> Any:
        preds = torch.from_numpy(np.asarray(self.decide(logits, batch[1].cpu()), dtype=np.int64))
        return batch[2].cpu(), preds

    compared = every_output  # no output is padding

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        targets = torch.cat([t for t, _ in outputs])
        preds = torch.cat([p for _, p in outputs])
        return classification_scores(targets, preds, self.classes)

    def config(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "numeric": list(self.numeric),
            "vocab": {k: list(v) for k, v in self.vocab.items()},
            "mean": list(self.mean),
            "std": list(self.std),
        }

    # --- data ---------------------------------------------------------------------------
    def read_eval_data(self, meta: dict[str, Any], path: Path) -> TabularData:
        """A labelled CSV table with the model's columns (label last)."""
        del meta
        table = read_table(path)
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise TensorfabError(f"{path}:1: no column {missing[0]!r} (the model reads it)")
        return self.encode_table(table)

    def encoded(self, data: TabularData | Table | None) -> TabularData:
        """Evaluation data as tensors: a package's own split comes back as a raw table."""
        if data is None:
            raise TensorfabError(
                "this model was trained without a test table (data.test_path); "
                "evaluate it with --data FILE"
            )
        return self.encode_table(data) if isinstance(data, Table) else data

    def eval_batches(self, data: TabularData | Table, batch_size: int, device: torch.device) -> Any:
        data = self.encoded(data)
        tensors = (data.numeric, data.codes, data.labels)
        return TensorBatches(tensors, batch_size, device=device, shuffle=False)

    def take_samples(self, data: TabularData | Table, index: torch.Tensor) -> TabularData:
        return self.encoded(data).subset(index)

    def input_lengths(self, data: Any) -> None:
        del data  # fixed-size rows
        return None

    # --- the inference graph ------------------------------------------------------------
    def signature(self) -> Signature:
        inputs = [
            TensorSpec("numeric", "FP32", (len(self.numeric),)),
            TensorSpec("categorical", "INT64", (len(self.vocab),)),
        ]
        return inputs, [TensorSpec(OUTPUT, "FP32", (len(self.classes),))]

    def graph(self, model: nn.Module) -> nn.Module:
        mean, std = (t.clone() for t in self._stats)
        return _TableGraph(model, mean, std).eval()

    def feed(self, batch: tuple[torch.Tensor, ...]) -> Feed:
        return {"numeric": batch[0].cpu().numpy(), "categorical": batch[1].cpu().numpy()}

    def example_feed(self, lengths: Sequence[int], rng: np.random.Generator) -> Feed:
        n = len(lengths)
        numeric = rng.normal(self.mean, self.std, (n, len(self.numeric))).astype(np.float32)
        highs = [len(v) + 1 for v in self.vocab.values()]
        codes = np.stack([rng.integers(0, h, n) for h in highs], axis=1) if highs else None
        if codes is None:
            codes = np.zeros((n, 0), dtype=np.int64)
        return {"numeric": numeric, "categorical": codes.astype(np.int64)}

    def quantize_options(self, onnx_path: Path) -> dict[str, Any]:
        """Weight MatMuls only: embeddings (Gather) stay exact."""
        del onnx_path
        return {"op_types_to_quantize": ["MatMul", "Gemm"], "extra_options": {}}

    # --- people's inputs and answers ----------------------------------------------------
    def read_inputs(self, items: list[str]) -> Inputs:
        """CSV files with a header naming the model's columns (a label column is ignored)."""
        rows, names = [], []
        for item in items:
            for number, record in read_records(item):
                rows.append(record)
                names.append(f"{item}:{number}")
        return self._inputs(rows, names)

    def _inputs(self, rows: list[dict[str, Any]], names: list[str]) -> Inputs:
        self._check_sensitive(rows, names)
        data = self.encode_rows(rows, names)
        return Inputs(data, names)

    def _check_sensitive(self, rows: list[dict[str, Any]], names: list[str]) -> None:
        if self.fairness is None:
            return
        column = self.fairness["sensitive"]
        for row, name in zip(rows, names, strict=True):
            if row.get(column) in (None, "", "?"):
                raise TensorfabError(
                    f"{name}: no {column!r}; this model applies fairness thresholds by "
                    f"{column!r}, so every input must carry it"
                )

    def decode_request(self, body: bytes, limits: ServingLimits) -> Inputs:
        """``{"instances": [{"column": value, ...}, ...]}``; a column not given is missing."""
        del limits
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TensorfabError(f"request body: not JSON ({exc})") from None
        rows = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise TensorfabError(
                'request body: expected {"instances": [{"column": value, ...}, ...]}'
            )
        if len(rows) > MAX_REQUEST_ROWS:
            raise TensorfabError(f"request body: {len(rows)} rows, at most {MAX_REQUEST_ROWS}")
        cells = [{k: None if v is None else str(v) for k, v in r.items()} for r in rows]
        return self._inputs(cells, [f"instances[{i}]" for i in range(len(rows))])

    def input_batches(
        self, inputs: Inputs, batch_size: int | None = None
    ) -> Iterable[tuple[Feed, Any]]:
        size = batch_size or PREDICT_BATCH
        data: TabularData = inputs.data
        for start in range(0, len(data), size):
            part = data.subset(torch.arange(start, min(start + size, len(data))))
            yield {"numeric": part.numeric.numpy(), "categorical": part.codes.numpy()}, start

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 3
    ) -> dict[int, dict[str, Any]]:
        names = inputs.names[key : key + len(logits)]
        rows = dict(enumerate(image_rows(names, logits, self.classes, top_k), start=key))
        if self.fairness is not None:
            codes = inputs.data.codes[key : key + len(logits)]
            decided = self.decide(logits, codes)
            for r, row in enumerate(rows.values()):
                row["label"] = self.classes[int(decided[r])]
                row["fairness"] = self.fairness["constraint"]
        return rows

    def serving_limits(self, version_dir: Path) -> ServingLimits:
        del version_dir
        return ServingLimits()

    def within(self, limits: ServingLimits) -> TabularClassification:
        del limits
        return self

    # --- robustness ---------------------------------------------------------------------
    def hf_export(self, model: nn.Module, directory: Path) -> None:
        del model, directory
        raise no_hf_form(self.name)

    def robustness(
        self, model: nn.Module, data: Any, device: torch.device, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Scores with Gaussian noise of ``eps`` training standard deviations added to every
        numeric column (seeded); categories unchanged."""
        data = self.encoded(data)
        rows = []
        for eps in NUMERIC_NOISE:
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(data.numeric.shape, generator=g) * torch.tensor(self.std) * eps
            noisy = TabularData(data.numeric + noise, data.codes, data.labels)
            name = "none" if eps == 0 else "gaussian-noise"
            rows.append({"attack": name, "eps": eps, **scores_on(self, model, noisy, 1024, device)})
        return rows

    # --- model FLOPs --------------------------------------------------------------------
    def forward_flops(self, model: nn.Module, count: TokenCount) -> float:
        """Every row costs the same: one row counted by ``FlopCounterMode``."""
        device = next(model.parameters()).device
        numeric = torch.zeros(1, len(self.numeric), device=device)
        codes = torch.zeros(1, len(self.vocab), dtype=torch.long, device=device)
        training = model.training
        model.eval()
        try:
            per_row = counted_flops(lambda: model(numeric, codes))
        finally:
            model.train(training)
        return float(count.samples * per_row)


def _draws(probs: np.ndarray, codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """A uniform number per row from the row itself, so that every path (evaluate's batches,
    predict, a served request) draws the same for the same example."""
    rows = np.concatenate([np.round(probs, 6), np.asarray(codes, dtype=np.float64)], axis=1)
    return np.array([zlib.crc32(r.tobytes()) / 2**32 for r in rows])


def _fit_table(table: Table) -> dict[str, Any]:
    """Numeric columns and their mean/std, categorical vocabularies: from the training table."""
    kinds = column_kinds(table)
    numeric = [c for c in table.columns if kinds[c] == "numeric"]
    vocab = {}
    for j, col in enumerate(table.columns):
        if kinds[col] == "categorical":
            vocab[col] = sorted({row[j] for row in table.rows if row[j] is not None})
    mean, std = [], []
    for col in numeric:
        j = table.columns.index(col)
        values = np.array([float(r[j]) for r in table.rows if r[j] is not None])
        mean.append(round(float(values.mean()), 6) if len(values) else 0.0)
        std.append(round(max(float(values.std()), 1e-6), 6) if len(values) else 1.0)
    return {"numeric": numeric, "vocab": vocab, "mean": mean, "std": std}


def _check_fairness(fairness: dict[str, Any] | None, task: TabularClassification) -> None:
    if fairness is None:
        return
    column = fairness["sensitive"]
    if column not in task.vocab:
        raise TensorfabError(
            f"train.fairness.sensitive: {column!r} is not a categorical column of the data "
            f"(categorical: {', '.join(task.vocab) or 'none'})"
        )
    if len(task.classes) != 2:
        raise TensorfabError(
            f"train.fairness: needs two classes (a positive decision), the data has "
            f"{len(task.classes)}"
        )


def prepare_tables(
    splits: TableSplits,
    *,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    fairness: dict[str, Any] | None = None,
    **_: Any,
) -> Workload:
    """Table splits -> a workload: columns typed and standardisation fitted on train only."""
    train_table = splits.train
    classes = sorted(set(train_table.labels or []))
    fitted = _fit_table(train_table)
    task = TabularClassification(classes, **fitted)
    _check_fairness(fairness, task)
    train = task.encode_table(train_table)
    evals = train
    if val_fraction > 0:
        keep, held = stratified_split(train.labels, val_fraction, split_seed)
        train, evals = train.subset(keep), train.subset(held)
    test = task.encode_table(splits.test) if splits.test is not None else evals
    parts = {"train": train, "eval": evals, "test": test}

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> Any:
        data = parts[split]
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        tensors = (data.numeric, data.codes, data.labels)
        return TensorBatches(
            tensors, batch_size, device=where.device, shuffle=shuffle, seed=where.seed, **shard
        )

    meta = {
        "labels": classes,
        "input": {"kind": "table", "numeric": fitted["numeric"], "categorical": list(task.vocab)},
        "preprocessing": {"standardise": "(x - mean) / std", "mean": task.mean, "std": task.std},
        "task_config": task.config(),
    }
    sizes = {k: len(v) for k, v in parts.items()}
    args = {
        "num_classes": len(classes),
        "num_numeric": len(task.numeric),
        "cardinalities": [len(v) for v in task.vocab.values()],
    }
    post = _fairness_fitter(task, evals, fairness) if fairness else None
    count = TokenCount(len(train))
    return Workload(task, args, sizes, meta, make_batches, train_count=count, postprocess=post)


def _fairness_fitter(
    task: TabularClassification, evals: TabularData, fairness: dict[str, Any]
) -> Callable[[nn.Module, Path], None]:
    """With each saved best model: fit the thresholds on the validation split with that
    model's probabilities and write ``fairness.json`` beside it. Training itself (model
    selection, the run's own test scores) stays unmitigated; the package applies the rule."""

    def save(model: nn.Module, package_dir: Path) -> None:
        training = model.training
        model.eval()
        device = next(model.parameters()).device
        batch = (evals.numeric.to(device), evals.codes.to(device))
        try:
            with torch.no_grad():
                probs = softmax(task.logits(model, batch))
        finally:
            model.train(training)
        positive = task.classes[-1]
        rule = fit_thresholds(
            probs[:, task.classes.index(positive)],
            task.groups(evals.codes, fairness["sensitive"]),
            (evals.labels == task.classes.index(positive)).long().numpy(),
            fairness["constraint"],
            fairness["sensitive"],
            fairness.get("cut", DEFAULT_CUT),
        )
        rule = {**rule, "positive": positive, "fitted_on": f"{len(evals)} validation rows"}
        with atomic_path(Path(package_dir) / FAIRNESS_FILE) as tmp:
            tmp.write_text(json.dumps(rule, indent=2) + "\n", encoding="utf-8")

    return save


def _load_rule(package_dir: str | None) -> dict[str, Any] | None:
    path = Path(package_dir) / FAIRNESS_FILE if package_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TensorfabError(f"{path}:{exc.lineno}: invalid JSON") from None


@TASKS.register("tabular-classification", prepare=prepare_tables)
def build_tabular_classification(
    classes: list[str],
    numeric: list[str] | None = None,
    vocab: dict[str, list[str]] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    package_dir: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> TabularClassification:
    del input_spec  # the columns are in task_config
    return TabularClassification(
        list(classes),
        list(numeric or []),
        dict(vocab or {}),
        list(mean or []),
        list(std or []),
        _load_rule(package_dir),
    )
