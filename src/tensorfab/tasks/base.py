"""The task contract: everything that depends on what a model reads and answers.

A task owns its whole life, the way KServe's ``Model`` and LitServe's ``LitAPI`` own theirs:
training (batch -> logits -> loss, outputs -> metrics), evaluation and user inputs
(``evaluate``/``predict``), the inference graph with its signature and example inputs
(export, warm-up, latency), a served request and its answer, serving limits, quantisation
options, result rows and the FLOP count behind MFU. The engine, ``optimize``, ``serve`` and
the CLI call these methods and never ask what kind of input a model takes. A
:class:`Workload` is what a task makes of a data set before training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tensorfab.errors import TensorfabError

Batch = tuple[torch.Tensor, ...]
Feed = dict[str, np.ndarray]  # named graph inputs, as a runtime takes them
OUTPUT = "logits"  # the one output of every inference graph
TRAIN_FLOPS_FACTOR = 3  # a training step: forward + backward (input and weight gradients)


@dataclass(frozen=True)
class Prediction:
    """Per-example predictions: class indices and their probabilities."""

    labels: torch.Tensor  # int64 [N]
    probs: torch.Tensor  # float32 [N, C]


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's signature; ``shape`` excludes the batch axis (-1: any)."""

    name: str
    datatype: str  # KServe v2 / Triton datatype name: UINT8, INT64, FP32, ...
    shape: tuple[int, ...]


Signature = tuple[list[TensorSpec], list[TensorSpec]]


@dataclass(frozen=True)
class TokenCount:
    """What the FLOPs of some samples depend on: how many, and their real token lengths
    (sum and sum of squares; zero for fixed-size inputs such as images)."""

    samples: int
    token_sum: float = 0.0
    token_sq_sum: float = 0.0


@dataclass(frozen=True)
class ServingLimits:
    """What a served model accepts; None where the model sets no such bound.

    ``vocab_size`` / ``max_positions``: token ids in [0, vocab_size), 1 to max_positions per
    row. ``max_pixels``: the largest decoded image a request may hold (decompression bombs).
    """

    vocab_size: int | None = None
    max_positions: int | None = None
    max_pixels: int | None = None


@dataclass
class Inputs:
    """Inputs as a person gave them, decoded: ``data`` in the task's own form (a uint8 image
    tensor, a list of texts), a name per example, and notes on what was done to them."""

    data: Any
    names: list[str]
    notes: list[str] = field(default_factory=list)  # "name: what was done", for people
    example_notes: dict[int, list[str]] = field(default_factory=dict)  # by example index
    # the document of each example, where a task reads examples in context (the lines of
    # one predict file, the instances of one request); empty: every example on its own
    documents: list[int] = field(default_factory=list)


class Task(Protocol):
    """What every layer calls; batches are tuples of tensors already on the device."""

    name: str
    classes: list[str]  # label index -> name
    metric_names: tuple[str, ...]  # what ``eval_scores`` returns (plus "loss"), for train.metric

    # --- training and evaluation -------------------------------------------------------
    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Raw model outputs for the batch."""
        ...

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean loss of the batch (a 0-dim tensor, not synced to the host)."""
        ...

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        """Host-side outputs of one evaluation batch (predictions with their targets)."""
        ...

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        """Task metrics over a whole split from the outputs of all its batches."""
        ...

    def compared(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The outputs that mean something, for comparing two runtimes' (parity): all of
        them, or a token model's at the positions its mask keeps (a ragged runtime computes
        nothing at padding)."""
        ...

    def config(self) -> dict[str, Any]:
        """What the model package must record to rebuild this task (``task_config``)."""
        ...

    # --- data for evaluate, export and calibration ----------------------------------------
    def read_eval_data(self, meta: dict[str, Any], path: Path) -> Any:
        """A user's evaluation file or folder, read by the format the package implies."""
        ...

    def eval_batches(self, data: Any, batch_size: int, device: torch.device) -> Any:
        """Unshuffled batches of evaluation data (``.epoch(0)`` iterates them)."""
        ...

    def take_samples(self, data: Any, index: torch.Tensor) -> Any:
        """The examples of ``data`` at ``index``, in that order."""
        ...

    def input_lengths(self, data: Any) -> list[int] | None:
        """The sequence length of each example as the graph sees it; None: fixed-size."""
        ...

    # --- the inference graph ------------------------------------------------------------
    def signature(self) -> Signature:
        """Named inputs and outputs of the inference graph (batch axis left out)."""
        ...

    def graph(self, model: nn.Module) -> nn.Module:
        """The inference graph: the signature's inputs, in order -> :data:`OUTPUT`."""
        ...

    def feed(self, batch: Batch) -> Feed:
        """A batch of :meth:`eval_batches` as the graph's named inputs."""
        ...

    def example_feed(self, lengths: Sequence[int], rng: np.random.Generator) -> Feed:
        """Random valid inputs: one example per entry of ``lengths`` (tokens per example,
        ignored by fixed-size inputs); for export, warm-up and latency."""
        ...

    def quantize_options(self, onnx_path: Path) -> dict[str, Any]:
        """onnxruntime ``quantize_static`` keyword arguments: which ops INT8 quantizes."""
        ...

    # --- people's inputs and answers ----------------------------------------------------
    def read_inputs(self, items: list[str]) -> Inputs:
        """``tensorfab predict``'s arguments (files, or texts) as inputs."""
        ...

    def decode_request(self, body: bytes, limits: ServingLimits) -> Inputs:
        """A served ``:predict`` request body as inputs (TensorfabError: a bad request)."""
        ...

    def input_batches(
        self, inputs: Inputs, batch_size: int | None = None
    ) -> Iterable[tuple[Feed, Any]]:
        """Inputs as graph feeds (``batch_size`` rows each; None: the task's own size), each
        with the key :meth:`rows` needs to read its logits."""
        ...

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int
    ) -> dict[int, dict[str, Any]]:
        """Result rows of one feed, keyed by example index (what ``predict`` prints)."""
        ...

    def serving_limits(self, version_dir: Path) -> ServingLimits:
        """The bounds a served version enforces on requests."""
        ...

    def within(self, limits: ServingLimits) -> Task:
        """This task, encoding people's inputs within ``limits`` (e.g. truncating)."""
        ...

    # --- robustness (tensorfab audit robustness) -----------------------------------------
    def robustness(
        self, model: nn.Module, data: Any, device: torch.device, seed: int = 0
    ) -> list[dict[str, Any]]:
        """The task's scores on ``data`` under its perturbations (``tasks/robustness.py``):
        rows ``{"attack", "eps", **scores}``, the unperturbed row first."""
        ...

    # --- other tools' formats (tensorfab export --format hf) ------------------------------
    def hf_export(self, model: nn.Module, directory: Path) -> None:
        """Write ``model`` into the empty ``directory`` as a Hugging Face model directory
        (config with ``id2label``/``label2id``, safetensors weights, tokenizer) that
        ``AutoModelFor*.from_pretrained`` loads; TensorfabError for a task without one."""
        ...

    # --- model FLOPs (MFU) --------------------------------------------------------------
    def forward_flops(self, model: nn.Module, count: TokenCount) -> float:
        """FLOPs one forward pass needs over ``count`` (real tokens only, as MFU counts)."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where and how batches are made: device, shuffling seed, DDP shard, residency."""

    device: torch.device
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    resident: str = "auto"  # auto | on | off: data kept on the device, batched there
    bucket: bool = False  # length-aware batching (sequences only)
    pack: bool = False  # pack training sequences into rows (token classification only)


@dataclass
class Workload:
    """A task applied to a data set: ready to build a model and iterate batches."""

    task: Task
    model_args: dict[str, Any]  # for create_model, from the data (classes, channels, ...)
    sizes: dict[str, int]  # examples per split: train, eval, test
    package_meta: dict[str, Any]  # labels, input, preprocessing, task_config
    make_batches: Callable[[str, int, bool, Placement], Any]  # (split, batch, train, where)
    save_assets: Callable[[Path], None] = field(default=lambda _d: None)
    notes: list[str] = field(default_factory=list)  # warnings for the person (truncation, ...)
    train_count: TokenCount | None = None  # the training split's samples and real tokens
    # files that depend on the trained model (fairness thresholds), written with the assets
    postprocess: Callable[[nn.Module, Path], None] | None = None
    # a fresh model's start from the training data (intents: prototype head); not on resume
    init_model: Callable[[nn.Module], None] | None = None


def no_hf_form(task: str, why: str = "") -> TensorfabError:
    """The one error of ``export --format hf`` for a task whose model has no such form."""
    because = f" ({why})" if why else ""
    return TensorfabError(
        f"export --format hf: {task} models have no Hugging Face form{because}; only "
        "token-classification and text-classification models export to one "
        "(use the ONNX export: tensorfab export MODEL --repo REPO)"
    )


def signature_axes(signature: Signature) -> dict[str, dict[int, str]]:
    """ONNX dynamic axes: every tensor's batch axis, and each input's -1 axes as "sequence"."""
    inputs, outputs = signature
    axes = {
        s.name: {0: "batch", **{i + 1: "sequence" for i, n in enumerate(s.shape) if n == -1}}
        for s in inputs
    }
    return {**axes, **{s.name: {0: "batch"} for s in outputs}}


def every_output(task: Any, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``Task.compared`` of a task none of whose outputs is padding: all of them."""
    del task, batch
    return logits


def variable_length(signature: Signature) -> bool:
    """Whether a graph takes sequences (an input with a -1 axis) rather than fixed sizes."""
    return any(-1 in s.shape for s in signature[0])
