"""Image classification: uint8 images -> normalised floats -> logits -> cross-entropy.

Images travel as uint8 (4x less to copy) and are scaled and normalised on the device,
with the mean and std recorded in the model package so predict does exactly the same; the
inference graph takes uint8 images too, normalisation inside. Evaluation data is IDX files
or a folder of class folders, people's inputs are image files or IDX image files, a served
request is one encoded image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data import ImageData, ImageSplits, load_eval_data, stratified_split
from tensorfab.data.batching import TensorBatches, fits_on_device
from tensorfab.data.idx import MNIST_FILES, find_mnist_files, read_idx_images
from tensorfab.data.imagefolder import IMAGE_SUFFIXES
from tensorfab.errors import TensorfabError
from tensorfab.metrics import classification_scores
from tensorfab.tasks.base import (
    OUTPUT,
    Feed,
    Inputs,
    Placement,
    Prediction,
    ServingLimits,
    Signature,
    TensorSpec,
    TokenCount,
    Workload,
    every_output,
    no_hf_form,
)
from tensorfab.tasks.flops import counted_flops
from tensorfab.tasks.image_inputs import (
    DEFAULT_MAX_PIXELS,
    TrainingForm,
    decode_image,
    measure_polarity,
    to_training_form,
)
from tensorfab.tasks.prediction import image_rows
from tensorfab.tasks.registry import TASKS
from tensorfab.tasks.robustness import IMAGE_ATTACKS, attack

EVAL_IDX_ROLES = ("test_images", "test_labels")
PREDICT_BATCH = 1024
OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


class _ImageGraph(nn.Module):
    """uint8 images [B, C, H, W] -> logits [B, classes], preprocessing included."""

    def __init__(self, model: nn.Module, task: ImageClassification) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.task.inputs(images))


@dataclass
class ImageClassification:
    classes: list[str]
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) the model takes
    polarity: str = "none"  # of the training images (tasks.image_inputs), "none": photos
    name: str = "image-classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")

    def __post_init__(self) -> None:
        self.image_shape = tuple(self.image_shape)  # type: ignore[assignment]
        self._mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std).view(1, -1, 1, 1)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32 [B, C, H, W], scaled to 0..1 and normalised."""
        if self._mean.device != images.device:
            self._mean = self._mean.to(images.device)
            self._std = self._std.to(images.device)
        return (images.float() / 255.0 - self._mean) / self._std

    def logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(self.inputs(batch[0]))

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), batch[1])

    def targets(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return batch[1]

    def predict(self, logits: torch.Tensor) -> Prediction:
        probs = torch.softmax(logits.float(), dim=-1)
        return Prediction(labels=probs.argmax(dim=-1), probs=probs)

    def scores(self, targets: torch.Tensor, preds: torch.Tensor) -> dict[str, Any]:
        return classification_scores(targets.cpu(), preds.cpu(), self.classes)

    def eval_step(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> Any:
        return batch[1].cpu(), logits.argmax(dim=-1).cpu()

    compared = every_output  # no output is padding

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        targets = torch.cat([t for t, _ in outputs])
        return self.scores(targets, torch.cat([p for _, p in outputs]))

    def config(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "mean": list(self.mean), "std": list(self.std)}

    def hf_export(self, model: nn.Module, directory: Path) -> None:
        del model, directory
        raise no_hf_form(self.name)

    def robustness(
        self, model: nn.Module, data: ImageData, device: torch.device, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Scores under FGSM and PGD at each eps of ``IMAGE_ATTACKS`` (pixel range 0..1)."""
        del seed  # the attacks are deterministic
        rows = []
        for name, eps in IMAGE_ATTACKS:
            outputs = []
            for images, labels in self.eval_batches(data, 256, device).epoch(0):
                pixels = images.float() / 255.0
                adv = attack(name, lambda p, y=labels: self._pixel_loss(model, p, y), pixels, eps)
                with torch.no_grad():
                    outputs.append(self.eval_step(model(self._normalise(adv)), (adv, labels)))
            rows.append({"attack": name, "eps": eps, **self.eval_scores(outputs)})
        return rows

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self._mean.to(pixels.device)) / self._std.to(pixels.device)

    def _pixel_loss(self, model: nn.Module, pixels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(self._normalise(pixels)).float(), y)

    # --- data ---------------------------------------------------------------------------
    def read_eval_data(self, meta: dict[str, Any], path: Path) -> ImageData:
        """IDX test files (or a folder of them) or a folder of class folders."""
        c, h, _ = self.image_shape
        data, found = load_eval_data(detect_format(path), str(path), image_size=h, channels=c)
        if tuple(data.images.shape[1:]) != self.image_shape:
            raise TensorfabError(
                f"{path}: images are {tuple(data.images.shape[1:])} but the model expects "
                f"{self.image_shape} (C, H, W)"
            )
        return _remap(data, found, meta["labels"], path)

    def eval_batches(self, data: ImageData, batch_size: int, device: torch.device) -> Any:
        return TensorBatches((data.images, data.labels), batch_size, device=device, shuffle=False)

    def take_samples(self, data: ImageData, index: torch.Tensor) -> ImageData:
        return data.subset(index)

    def input_lengths(self, data: Any) -> None:
        del data  # fixed-size inputs
        return None

    # --- the inference graph ------------------------------------------------------------
    def signature(self) -> Signature:
        images = TensorSpec("images", "UINT8", self.image_shape)
        return [images], [TensorSpec(OUTPUT, "FP32", (len(self.classes),))]

    def graph(self, model: nn.Module) -> nn.Module:
        return _ImageGraph(model, self).eval()

    def feed(self, batch: tuple[torch.Tensor, ...]) -> Feed:
        """(images, labels) -> the images."""
        return {"images": batch[0].cpu().numpy()}

    def example_feed(self, lengths: Sequence[int], rng: np.random.Generator) -> Feed:
        """Random uint8 images, one per entry of ``lengths``."""
        size = (len(lengths), *self.image_shape)
        return {"images": rng.integers(0, 256, size, dtype=np.uint8)}

    def quantize_options(self, onnx_path: Path) -> dict[str, Any]:
        """Every op: a CNN's activations quantize well."""
        del onnx_path
        return {"op_types_to_quantize": None, "extra_options": {}}

    # --- people's inputs and answers ----------------------------------------------------
    def training_form(self) -> TrainingForm:
        """Channels, size and polarity of the training images: what people's images become."""
        c, h, w = self.image_shape
        return TrainingForm(c, h, w, self.polarity)  # type: ignore[arg-type]

    def read_inputs(self, items: list[str]) -> Inputs:
        """Image files (PNG, JPEG, ...), brought to the training form with a note on each
        change, and IDX image files (already in it); checked for the model's shape."""
        inputs = Inputs(None, [])
        images = []
        for item in items:
            p = image_input_path(item)
            if p.suffix.lower() in IMAGE_SUFFIXES or not looks_like_idx(p):
                images.append(self._converted(_decoded(p), str(p), inputs))
                continue
            batch = read_idx_images(p)
            images.append(batch)
            inputs.names += [f"{p}[{i}]" for i in range(len(batch))]
        inputs.data = torch.cat(images)
        if tuple(inputs.data.shape[1:]) != self.image_shape:
            raise TensorfabError(
                f"inputs are {tuple(inputs.data.shape[1:])} images; the model expects "
                f"{self.image_shape}"
            )
        return inputs

    def _converted(self, image: Any, name: str, inputs: Inputs) -> torch.Tensor:
        """One decoded image in the training form, its notes kept under its index."""
        array, notes = to_training_form(image, self.training_form())
        if notes:
            inputs.example_notes[len(inputs.names)] = notes
            inputs.notes.append(f"{name}: {'; '.join(notes)}")
        inputs.names.append(name)
        return torch.from_numpy(np.array(array, dtype=np.uint8))[None]  # a writable copy

    def decode_request(self, body: bytes, limits: ServingLimits) -> Inputs:
        """One encoded image (PNG, JPEG, ...) as the body, refused over ``max_pixels``."""
        try:
            image = decode_image(body, "request body", limits.max_pixels or DEFAULT_MAX_PIXELS)
        except TensorfabError as exc:
            if exc.__cause__ is None and exc.__context__ is None:
                raise  # refused before decoding (over the pixel limit): said as it is
            raise TensorfabError(_image_problem(exc)) from None
        inputs = Inputs(None, [])
        inputs.data = self._converted(image, "request body", inputs)
        return inputs

    def input_batches(
        self, inputs: Inputs, batch_size: int | None = None
    ) -> Iterable[tuple[Feed, Any]]:
        size = batch_size or PREDICT_BATCH
        for start in range(0, len(inputs.data), size):
            yield {"images": inputs.data[start : start + size].numpy()}, start

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 3
    ) -> dict[int, dict[str, Any]]:
        names = inputs.names[key : key + len(logits)]
        rows = dict(enumerate(image_rows(names, logits, self.classes, top_k), start=key))
        for i, row in rows.items():
            if i in inputs.example_notes:
                row["notes"] = list(inputs.example_notes[i])
        return rows

    def serving_limits(self, version_dir: Path) -> ServingLimits:
        del version_dir
        return ServingLimits(max_pixels=DEFAULT_MAX_PIXELS)

    def within(self, limits: ServingLimits) -> ImageClassification:
        del limits
        return self

    # --- model FLOPs --------------------------------------------------------------------
    def forward_flops(self, model: nn.Module, count: TokenCount) -> float:
        """Every image costs the same: one example counted by ``FlopCounterMode``."""
        device = next(model.parameters()).device
        example = torch.zeros(1, *self.image_shape, dtype=torch.uint8, device=device)
        training = model.training
        model.eval()  # counting must not move batch-norm statistics
        try:
            per_image = counted_flops(lambda: model(self.inputs(example)))
        finally:
            model.train(training)
        return float(count.samples * per_image)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images [N, C, H, W] on the 0..1 scale."""
    x = images.float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-6)
    return [round(v, 6) for v in x.mean(dim=1).tolist()], [round(v, 6) for v in std.tolist()]


def prepare_images(
    splits: ImageSplits,
    *,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    limit_eval: int | None = None,
    **_: Any,
) -> Workload:
    """Image splits -> a workload; a validation part is carved from train when asked (else
    the test split is evaluated on); ``limit_eval`` keeps the first rows of what is
    evaluated on each epoch (text formats cut their eval split when they read it)."""
    train, test, evals = splits.train, splits.test, splits.test
    if val_fraction > 0:
        keep, held = stratified_split(train.labels, val_fraction, split_seed)
        train, evals = train.subset(keep), train.subset(held)
    if limit_eval is not None:
        evals = evals.subset(torch.arange(min(limit_eval, len(evals))))
    mean, std = channel_stats(train.images)
    _, c, h, w = train.images.shape
    polarity = measure_polarity(train.images.numpy())
    task = ImageClassification(list(splits.classes), mean, std, (c, h, w), polarity)
    parts = {"train": train, "eval": evals, "test": test}

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> TensorBatches:
        data = parts[split]
        nbytes = data.images.nelement() * data.images.element_size()
        resident = where.resident == "on" or (
            where.resident == "auto" and fits_on_device(nbytes, where.device)
        )
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        return TensorBatches(
            (data.images, data.labels),
            batch_size,
            device=where.device,
            shuffle=shuffle,
            seed=where.seed,
            resident=resident,
            **shard,
        )

    meta = {
        "labels": list(splits.classes),
        "input": {
            "kind": "image",
            "channels": c,
            "height": h,
            "width": w,
            "dtype": "uint8",
            "polarity": polarity,
        },
        "preprocessing": {"scale": "x / 255", "mean": mean, "std": std},
        "task_config": task.config(),
    }
    sizes = {k: len(v) for k, v in parts.items()}
    args = {"num_classes": len(splits.classes), "in_channels": c, "image_size": h}
    return Workload(task, args, sizes, meta, make_batches, train_count=TokenCount(len(train)))


@TASKS.register("image-classification", prepare=prepare_images)
def build_image_classification(
    classes: list[str],
    mean: list[float] | None = None,
    std: list[float] | None = None,
    package_dir: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> ImageClassification:
    del package_dir  # an image task needs no files besides the weights
    c = 1 if mean is None else len(mean)
    form = TrainingForm.from_input(input_spec or {"channels": c, "height": 28, "width": 28})
    image = (form.channels, form.height, form.width)
    return ImageClassification(
        list(classes), mean or [0.0] * c, std or [1.0] * c, image, form.polarity
    )


def detect_format(path: Path) -> str:
    """imagefolder for a folder of class folders, idx for IDX files or a folder of them."""
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return "imagefolder"
    if path.is_dir():
        _check_idx_folder(path)
    elif not _looks_like_idx(path):
        raise TensorfabError(
            f"{path}: not IDX data; an image model evaluates IDX files "
            "(e.g. t10k-images-idx3-ubyte.gz) or a folder of class folders"
        )
    return "idx"


def _looks_like_idx(path: Path) -> bool:
    """IDX files open with two zero bytes, gzip with 1f 8b: anything else is some other data.

    Checked before the IDX reader guesses a labels file from the name, which for a text file
    would complain about the name instead of saying the data is of the wrong kind.
    """
    with open(path, "rb") as handle:
        return handle.read(2) in (b"\x00\x00", b"\x1f\x8b")


def _check_idx_folder(path: Path) -> None:
    """A folder without class folders must hold the IDX test pair; say so in one sentence.

    Checked here rather than left to the IDX reader, whose message for a folder lists the
    missing files and then the expected ones, the same names twice over for an empty folder.
    """
    missing = []
    for role in EVAL_IDX_ROLES:
        try:
            find_mnist_files(path, (role,))
        except TensorfabError:
            missing.append(f"{MNIST_FILES[role]}[.gz]")
    if missing:
        raise TensorfabError(
            f"{path}: no {' or '.join(missing)} (IDX test data) and no class sub-folders"
        )


def _remap(data: ImageData, found: list[str] | None, labels: list[str], path: Path) -> ImageData:
    """Express the file's labels as indices of the model's labels."""
    if found is None:  # IDX: label numbers are the model's indices
        top = int(data.labels.max()) if len(data) else -1
        if top >= len(labels):
            raise TensorfabError(f"{path}: label {top} but the model has {len(labels)} classes")
        return data
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise TensorfabError(f"{path}: classes {unknown} are not among the model's {labels}")
    index = torch.tensor([labels.index(c) for c in found], dtype=torch.long)
    return ImageData(data.images, index[data.labels])


def _image_problem(exc: TensorfabError) -> str:
    """Why the body is not an image, without Python's object reprs.

    PIL names the stream it was given (``<_io.BytesIO object at 0x...>``), which tells a
    client nothing and leaks an address; the decoder's own error (the exception's context)
    is used when there is one, with any such repr cut out.
    """
    cause = exc.__cause__ or exc.__context__
    detail = str(cause) if cause is not None else str(exc).removeprefix("request body: ")
    detail = OBJECT_REPR.sub("", detail).strip().rstrip(":").strip() or "unknown format"
    return f"request body: not an image PIL can read ({detail})"


def image_input_path(item: str) -> Path:
    """A predict argument of an image model: a file (a folder is said to be one, not read)."""
    p = Path(item)
    if p.is_dir():
        raise TensorfabError(
            f"{p}: is a directory; predict reads image or IDX files, not folders (give DIR/*.png)"
        )
    if not p.is_file():
        raise TensorfabError(f"{p}: no such file")
    return p


def looks_like_idx(path: Path) -> bool:
    """Whether a file starts as an IDX file does (two zero bytes) or is gzip-compressed (as
    MNIST's are); anything else is decoded as an image, whatever its name (TIFF too)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head in (b"\x00\x00", b"\x1f\x8b")


def _decoded(path: Path) -> Any:
    """An image file decoded; a file of another kind (named without an image suffix) is
    said to be neither an image nor an IDX file rather than Pillow's words on it."""
    try:
        return decode_image(path)
    except TensorfabError:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise
        raise TensorfabError(
            f"{path}: neither an image (png, jpg, tiff, ...) nor an IDX file "
            "(magic 0x00000803); predict reads those"
        ) from None
