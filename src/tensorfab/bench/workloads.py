"""The named benchmark workloads: data, the engine's job spec, the baseline, and FLOPs.

``lenet-mnist``: the tutorial CNN on 28x28 images at batch 64 and 512, on real MNIST when
it is there, else random images of the same shape (the result says which).
``bert-base-ner``: a random-weight BERT-base with a token-classification head, and
``minilm-ner``: the real all-MiniLM-L6-v2 encoder, both on CoNLL-2003 train sentences
tokenized with minilm's uncased vocabulary, so the sequence lengths are the real ones.

Each workload gives the two sides the same examples: the baseline reads them from the
splits loaded here, the engine loads the same files with the same limits through its job
spec, as ``tensorfab train`` would.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tensorfab.bench.baselines import bert_base_ner, hf_trainer_ner, lenet_mnist, minilm_ner, ner
from tensorfab.bench.meter import BatchCount, StepMeter, count_images, count_sequences
from tensorfab.data import create_dataset
from tensorfab.data.idx import MNIST_FILES, find_mnist_files
from tensorfab.data.splits import limit_splits
from tensorfab.data.text_types import limit_text_splits
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path
from tensorfab.models.encoders import minilm_dir
from tensorfab.tasks import TokenCount
from tensorfab.tasks.flops import EncoderShape, encoder_forward_flops
from tensorfab.tasks.image_classification import ImageClassification

WORKLOAD_NAMES = ("lenet-mnist", "bert-base-ner", "minilm-ner")


@dataclass(frozen=True)
class Plan:
    """How a benchmark runs: device, quick or full, steps, where the data sets are."""

    device: torch.device
    quick: bool
    warmup: int
    steps: int
    data_dir: Path
    compile: str = "auto"  # auto | on | off, for the tensorfab side of training
    ablate: bool = False  # also run the tensorfab side with each speed setting switched off
    synthetic_ok: bool = True  # False for a --data-dir the user named: real MNIST or an error
    profile_dir: Path | None = None  # train: torch.profiler of the tensorfab side, per row

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps


def write_idx(path: Path, array: torch.Tensor) -> None:
    """A uint8 tensor as a raw IDX file (magic 0x0000 08 ndim, big-endian dims, the bytes)."""
    header = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + array.contiguous().numpy().tobytes())


def synthetic_mnist(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random 28x28 uint8 images and labels 0-9 as MNIST's four IDX files in ``folder``."""
    g = torch.Generator().manual_seed(seed)
    parts = {
        "train": (n_train, MNIST_FILES["train_images"], MNIST_FILES["train_labels"]),
        "test": (n_test, MNIST_FILES["test_images"], MNIST_FILES["test_labels"]),
    }
    for n, images, labels in parts.values():
        write_idx(folder / images, torch.randint(0, 256, (n, 28, 28), generator=g).byte())
        write_idx(folder / labels, torch.randint(0, 10, (n,), generator=g).byte())
    return folder


def _has_mnist(folder: Path) -> bool:
    try:
        find_mnist_files(folder)
    except TensorfabError:  # no folder or a file missing: the workload uses synthetic data
        return False
    return True


def has_mnist(data_dir: Path) -> bool:
    """Whether lenet-mnist finds real MNIST under ``data_dir`` (else it runs on synthetic)."""
    return _has_mnist(data_dir / "mnist")


class LenetMnist:
    """The GPU tutorials' CNN workload."""

    name = "lenet-mnist"
    task = "image-classification"
    tokens = False

    def __init__(self, plan: Plan) -> None:
        self.batch_sizes = (64, 512)
        real = plan.data_dir / "mnist"
        limit = max(self.batch_sizes) * plan.total_steps if plan.quick else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if _has_mnist(real):
            self.path, source = real, "real"
        elif not plan.synthetic_ok:  # a folder the user named must hold what it is named for
            raise TensorfabError(
                f"--data-dir {plan.data_dir}: no MNIST in {real} (lenet-mnist needs its four "
                "IDX files there; leave --data-dir out to run it on synthetic images)"
            )
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="tensorfab-bench-mnist-")
            n_train = limit or 60_000
            self.path = synthetic_mnist(Path(self._tmp.name), n_train, 1024)
            source = "synthetic (random uint8 images of MNIST's shape)"
        self.limits = {"limit_train": limit, "limit_test": 1024 if plan.quick else None}
        self.splits = create_dataset("idx", path=str(self.path), **self.limits)
        self.data = {"source": source, "path": str(real), "train_samples": len(self.splits.train)}

    def held_out(self, n: int) -> Any:
        """The splits with only the first ``n`` held-out (test) images: what inference sees."""
        return limit_splits(self.splits, None, n)

    def held_out_size(self) -> int:
        return len(self.splits.test)

    def count_baseline(self, batch: Any) -> BatchCount:
        return count_images(batch)

    def count_engine(self, batch: Any) -> BatchCount:
        return count_images(batch)

    def forward_flops(self, model: torch.nn.Module, meter: StepMeter) -> float:
        """Forward FLOPs of the timed steps: every sample costs the same (the task's count)."""
        task = ImageClassification([str(i) for i in range(10)], image_shape=(1, 28, 28))
        return task.forward_flops(model, TokenCount(meter.samples))

    def engine_spec(self, batch_size: int, max_steps: int | None, compile: bool) -> dict:
        """The job ``tensorfab train`` would run, at its best settings."""
        data = {"format": "idx", "path": str(self.path), "batch_size": batch_size}
        data.update({k: v for k, v in self.limits.items() if v is not None})
        train = {"optimizer": "adam", "lr": 1e-3, "fused": "on", "compile": compile}
        return _spec(self.task, "lenet", {}, data, train, max_steps)

    def build_baseline_model(self) -> torch.nn.Module:
        return lenet_mnist.build_model()

    def run_baseline(
        self, model: torch.nn.Module, device: torch.device, batch_size: int, meter: StepMeter
    ) -> dict:
        """The tutorial loop for warm-up plus timed steps, its batches seen by ``meter``."""
        optimizer = lenet_mnist.make_optimizer(model)
        train = self.splits.train
        loader = lenet_mnist.make_loader(train.images, train.labels, batch_size)
        lenet_mnist.train_steps(model, Metered(loader, meter), optimizer, device, meter.total)
        return dict(lenet_mnist.SETTINGS)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class NerWorkload:
    """Token classification on CoNLL-2003 train sentences with a BERT-style encoder."""

    task = "token-classification"
    tokens = True

    def __init__(self, name: str, plan: Plan) -> None:
        self.name = name
        # the Trainer baseline: minilm (issue 18's target); bert-base's is the same loop
        self.hf_trainer = name == "minilm-ner"
        self.batch_sizes = (4,) if plan.quick else (16,)
        folder = plan.data_dir / "conll2003"
        if not (folder / "train.txt").is_file():
            raise TensorfabError(
                f"{folder / 'train.txt'}: CoNLL-2003 train file not found; workload {name} "
                "draws its sequence lengths from it (give --data-dir)"
            )
        limit = max(self.batch_sizes) * plan.total_steps
        self.limits = {
            "path": str(folder / "train.txt"),
            "eval_path": str(folder / "valid.txt"),
            "limit_train": limit if plan.quick else max(limit, 2048),
            "limit_eval": 64 if plan.quick else 1024,
            "limit_test": 8,
        }
        self.splits = create_dataset("conll", **self.limits)
        self.data = {
            "source": "real (CoNLL-2003 train sentences, minilm uncased tokenizer)",
            "path": str(folder),
            "train_samples": len(self.splits.train),
        }
        self.tokenizer = ner.load_tokenizer()

    def build_baseline_model(self) -> torch.nn.Module:
        """The model as the tutorial builds it (random BERT-base, or minilm from its files)."""
        n = len(self.splits.labels)
        if self.name == "bert-base-ner":
            return bert_base_ner.build_model(n, self.tokenizer.vocab_size)
        return minilm_ner.build_model(n)

    def held_out(self, n: int) -> Any:
        """The splits with only the first ``n`` eval (CoNLL valid) sentences."""
        return limit_text_splits(self.splits, None, n, None)

    def held_out_size(self) -> int:
        return len(self.splits.eval)

    def count_baseline(self, batch: Any) -> BatchCount:
        return count_sequences(batch["attention_mask"])

    def count_engine(self, batch: Any) -> BatchCount:
        """(index, input_ids, attention_mask, labels), or packed rows whose third tensor
        numbers each row's sequences (0 = padding): sequences are counted by ``index``."""
        real = (batch[2] > 0).long()
        return BatchCount(len(batch[0]), real.sum(dim=1), real.numel())

    def forward_flops(self, model: torch.nn.Module, meter: StepMeter) -> float:
        """Forward FLOPs of the timed steps on their real tokens (padding excluded)."""
        tokens = meter.tokens()
        if tokens is None:
            return 0.0
        return encoder_forward_flops(EncoderShape.from_config(model.config), *tokens)

    def engine_spec(self, batch_size: int, max_steps: int | None, compile: bool) -> dict:
        """The job ``tensorfab train`` would run: the baseline's optimizer, engine batching."""
        data = {"format": "conll", **self.limits, "batch_size": batch_size}
        data["length_bucketing"] = True
        train = {
            "optimizer": "adamw",
            "lr": ner.LEARNING_RATE,
            "scheduler": "linear",
            "clip_grad_norm": ner.MAX_GRAD_NORM,
            "fused": "on",
            "compile": compile,
            "metric": "f1",
        }
        if self.name == "bert-base-ner":
            args = {"random_init": True, **bert_base_ner.BERT_BASE_SHAPE}
            return _spec(self.task, f"hf:{minilm_dir()}", args, data, train, max_steps)
        return _spec(self.task, "minilm-l6", {}, data, train, max_steps)

    def features(self, examples: list[Any]) -> list[dict[str, list[int]]]:
        """Sentences tokenized the tutorial's way, for the baseline."""
        index = {t: i for i, t in enumerate(self.splits.labels)}
        tags = [[index[t] for t in ex.tags] for ex in examples]
        return ner.tokenize_and_align(self.tokenizer, [ex.words for ex in examples], tags)

    def run_baseline(
        self, model: torch.nn.Module, device: torch.device, batch_size: int, meter: StepMeter
    ) -> dict:
        """The Trainer-style loop for warm-up plus timed steps, its batches seen by ``meter``."""
        optimizer, scheduler = ner.make_optimizer(model, meter.total)
        loader = ner.make_loader(self.features(self.splits.train), self.tokenizer, batch_size)
        ner.train_steps(model, Metered(loader, meter), optimizer, scheduler, device, meter.total)
        return dict(ner.SETTINGS)

    def run_hf_trainer(
        self, model: torch.nn.Module, device: torch.device, batch_size: int, meter: StepMeter
    ) -> dict:
        """``transformers.Trainer`` itself for warm-up plus timed steps (``meter`` sees them)."""
        features = self.features(self.splits.train)
        return hf_trainer_ner.train_with_trainer(
            model, features, self.tokenizer, batch_size, device, meter
        )

    def close(self) -> None:
        return None


def _spec(
    task: str,
    model: str,
    args: dict,
    data: dict,
    train: dict,
    max_steps: int | None,
) -> dict:
    train = {**train, "epochs": 1000 if max_steps else 1, "max_steps": max_steps}
    train["log_every_steps"] = 50
    return {
        "name": "bench",
        "task": task,
        "data": data,
        "model": {"name": model, "args": args},
        "train": train,
    }


class Metered:
    """An iterable (a ``DataLoader``) whose every pass goes through a :class:`StepMeter`."""

    def __init__(self, inner: Any, meter: StepMeter) -> None:
        self.inner, self.meter = inner, meter

    def __iter__(self) -> Any:
        return self.meter.wrap(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def create_workload(name: str, plan: Plan) -> LenetMnist | NerWorkload:
    """A workload by name; an unknown name is the user's error, listing the known ones."""
    if name == "lenet-mnist":
        return LenetMnist(plan)
    if name in ("bert-base-ner", "minilm-ner"):
        return NerWorkload(name, plan)
    raise TensorfabError(
        f"--workloads: unknown workload {name!r}; choose from {', '.join(WORKLOAD_NAMES)}"
    )
