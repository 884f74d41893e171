"""What the two language tasks on transformer encoders share (one base class, no deeper).

Both tokenize with the encoder's own (fast) tokenizer, keep sequences unpadded until a
batch is made (dynamic padding, optional length bucketing), truncate to ``max_length`` with
a count of what was cut, and store the tokenizer in the model package. Their graphs take
token ids and an attention mask; a served version refuses ids outside the vocabulary and
rows longer than the position table (:meth:`EncoderTask.serving_limits`). The tokenizer is
loaded only when something is encoded, so a task rebuilt for its signature alone is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from tensorfab.data import load_eval_data
from tensorfab.data.sequence_batching import (
    BUCKET_WINDOW,
    SequenceBatches,
    resident_bytes,
    sequences_fit,
)
from tensorfab.data.text_types import TextSplits, read_text_file
from tensorfab.errors import TensorfabError
from tensorfab.models import model_entry
from tensorfab.models.encoders import POOLING_KEY, load_tokenizer
from tensorfab.tasks.alignment import IGNORE, word_starts
from tensorfab.tasks.base import (
    OUTPUT,
    Batch,
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
from tensorfab.tasks.flops import EncoderShape, encoder_forward_flops
from tensorfab.tasks.prediction import softmax
from tensorfab.tasks.robustness import TEXT_NOISE, scores_on

TOKENIZER_DIR = "tokenizer"
ENCODER_CONFIG = Path("encoder") / "config.json"  # package.io.ENCODER_DIR (tested equal)
MAX_TEXTS = 1024  # texts per served request
SANE_MODEL_MAX_LENGTH = 1_000_000  # tokenizers without a limit say ~1e30
PREDICT_BATCH = 64
EVAL_BATCH = 64  # rows of a length-sorted evaluation batch in training (make_batches)
ENCODE_CHUNK = 2000  # examples tokenized between two progress reports
# progress(what, done, total, unit): how a caller hears of long work (the engine's loggers)
Progress = Callable[[str, int, int, str], None]


def truncate(ids: list[int], word_ids: list[int | None], max_length: int) -> tuple[list, list]:
    """Keep the first max_length - 1 tokens and the closing special token."""
    if len(ids) <= max_length:
        return ids, word_ids
    return [*ids[: max_length - 1], ids[-1]], [*word_ids[: max_length - 1], None]


class _EncoderGraph(nn.Module):
    """token ids and attention mask [B, T] -> logits ([B, T, C] or [B, C])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@dataclass
class EncoderTask:
    """The shared half of token and text classification; subclasses set the class vars."""

    classes: list[str]
    tokenizer: Any = field(default=None, repr=False)
    max_length: int = 512
    tokenizer_source: str | None = field(default=None, repr=False)  # loaded on first use

    head: ClassVar[str]  # the encoder head: "token" or "sequence"
    data_format: ClassVar[str]  # the data format a user's evaluation file is read with
    cut_unit: ClassVar[str]  # what truncation cuts: "words", "texts"
    example_unit: ClassVar[str] = "texts"  # what one example is, for progress lines

    # --- subclass hooks ---------------------------------------------------------------
    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[Any], int]:
        raise NotImplementedError

    def encode_split(self, split: str, examples: list[Any]) -> tuple[list[list[int]], list, int]:
        """A training job's split ("train", "eval", "test"); the same as :meth:`encode`
        unless a task treats a split apart (intents: where the OOS rule is chosen)."""
        del split
        return self.encode(examples)

    def placeholder(self, text: str) -> Any:
        """An example of ``text`` with placeholder labels, for encoding people's texts."""
        raise NotImplementedError

    def in_documents(self, examples: list[Any], documents: list[int]) -> list[Any]:
        """People's examples placed in their documents (a task that reads context)."""
        del documents  # one text is one example by default
        return examples

    def model_head(self) -> str:
        """The encoder head the model is built with (``create_model``'s ``head``)."""
        return self.head

    def text_row(self, text: str, probs: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def logits_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def noisy(self, example: Any, rate: float, rng: random.Random) -> Any:
        """``example`` with character noise at ``rate`` in its text, labels kept aligned."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------
    def robustness(
        self, model: nn.Module, data: list[Any], device: torch.device, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Scores under character noise at each rate of ``TEXT_NOISE`` (seeded)."""
        rows = []
        for name, rate in TEXT_NOISE:
            rng = random.Random(seed)
            noisy = [self.noisy(ex, rate, rng) for ex in data]
            scores = scores_on(self, model, noisy, 64, device)
            rows.append({"attack": name, "eps": rate, **scores})
        return rows

    def tok(self) -> Any:
        """The tokenizer, loaded from ``tokenizer_source`` the first time it is needed."""
        if self.tokenizer is None:
            if self.tokenizer_source is None:
                raise TensorfabError(f"{self.name}: needs package_dir or encoder for a tokenizer")
            self.tokenizer = load_tokenizer(self.tokenizer_source)
        return self.tokenizer

    def encode_texts(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Token ids of whole texts (one label each), cut to ``max_length``; and how many were."""
        ids, cut = [], 0
        for row in self.tok()(texts)["input_ids"]:
            cut += len(row) > self.max_length
            ids.append(truncate(row, [None] * len(row), self.max_length)[0])
        return ids, cut

    def config(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "max_length": self.max_length}

    def read_eval_data(self, meta: dict[str, Any], path: Path) -> list[Any]:
        spec = meta["data"]["spec"]
        options = {k: spec[k] for k in ("text_column", "label_column")}
        options.update(self.eval_options(spec, path))
        examples, _ = load_eval_data(self.data_format, str(path), **options)
        found = {t for ex in examples for t in getattr(ex, "tags", [getattr(ex, "label", None)])}
        unknown = sorted(found - set(meta["labels"]))
        if unknown:
            raise TensorfabError(f"{path}: labels {unknown} are not among the model's labels")
        return examples

    def eval_options(self, spec: dict[str, Any], path: Path) -> dict[str, Any]:
        """Extra reader options for a user's evaluation file (none by default)."""
        del spec, path
        return {}

    def eval_batches(self, data: Any, batch_size: int, device: torch.device) -> SequenceBatches:
        ids, labels, _ = self.encode(data)
        pad = self.tok().pad_token_id or 0
        return SequenceBatches(
            ids, labels, batch_size, device=device, shuffle=False, pad_id=pad, bucket=True
        )

    def take_samples(self, data: Any, index: torch.Tensor) -> list[Any]:
        return [data[i] for i in index.tolist()]

    def input_lengths(self, data: Any) -> list[int]:
        return [len(ids) for ids in self.encode(data)[0]]

    def signature(self) -> Signature:
        inputs = [
            TensorSpec("input_ids", "INT64", (-1,)),
            TensorSpec("attention_mask", "INT64", (-1,)),
        ]
        return inputs, [TensorSpec(OUTPUT, "FP32", self.logits_shape())]

    compared = every_output  # no output is padding

    def graph(self, model: nn.Module) -> nn.Module:
        return _EncoderGraph(model).eval()

    def feed(self, batch: Batch) -> Feed:
        """(index, input_ids, attention_mask, labels) -> the ids and the mask."""
        return {"input_ids": batch[1].cpu().numpy(), "attention_mask": batch[2].cpu().numpy()}

    def example_feed(self, lengths: Sequence[int], rng: np.random.Generator) -> Feed:
        """Random token ids (1000..20000, within the vocabulary) at the given lengths,
        padded to the longest."""
        tokenizer = self._maybe_tok()
        high = min(20000, len(tokenizer)) if tokenizer is not None else 20000
        low = min(1000, high - 1)
        width = max(lengths)
        ids = np.zeros((len(lengths), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(low, high, n)
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def quantize_options(self, onnx_path: Path) -> dict[str, Any]:
        """Only the weight matmuls of an encoder, outputs kept fp32, a Q/DQ pair per input.

        In an encoder, quantizing the activations of softmax, layer norm, the residual adds
        and GELU costs accuracy (their ranges are wide and set by outliers) for little
        speed, and so do the attention matmuls Q·K^T and P·V whose both sides are
        activations. So only MatMul/Gemm with a constant weight are quantized, their
        outputs stay fp32 (the bias add and the attention mask add follow them), and each
        quantized input gets its own Q/DQ pair: on the tiny NER model, quantizing every op
        instead gave 3.6x the mean logit error (word agreement with fp32 0.975 against
        0.994) and met zero-width ranges. The embedding Gather stays fp32 too: with no
        quantized consumer, its DequantizeLinear runs over the whole table on every call
        (measured 1.7x slower at batch 1).
        """
        return {
            "op_types_to_quantize": ["MatMul", "Gemm"],
            "nodes_to_exclude": activation_matmuls(onnx_path),
            "extra_options": {
                "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
                "DedicatedQDQPair": True,
            },
        }

    def read_inputs(self, items: list[str]) -> Inputs:
        """Each item is a file of lines (one text per line; the file is one document) or a
        text itself (a document of its own)."""
        texts: list[str] = []
        documents: list[int] = []
        for number, item in enumerate(items):
            p = Path(item)
            if _names_a_file(item):
                found = [line for line in read_text_file(p).splitlines() if line.strip()]
            else:
                found = [_argument_text(item, number + 1)]
            texts += found
            documents += [number] * len(found)
        if not texts:
            raise TensorfabError("predict: no text to predict (empty input files?)")
        return Inputs(texts, [f"text {i}" for i in range(len(texts))], documents=documents)

    def decode_request(self, body: bytes, limits: ServingLimits) -> Inputs:
        """``{"instances": ["text", ...]}`` or ``{"text": "..."}``; the instances of one
        request are one document."""
        del limits  # texts longer than the position table are truncated (see within)
        texts = request_texts(body)
        return Inputs(texts, [], documents=[0] * len(texts))

    def input_batches(
        self, inputs: Inputs, batch_size: int | None = None
    ) -> Iterable[tuple[Feed, Any]]:
        """People's texts, tokenized in one call, as feeds of similar length; each key is
        the batch ``rows`` reads: (index, input_ids, attention_mask, labels).

        The batches are the evaluation batches of :class:`SequenceBatches` (length-sorted
        windows, each padded to its longest; tested equal), built once in numpy: a served
        request holds one text or a few, and the sampler and per-row tensors of training
        batches cost more than tokenizing it. The feeds are the key's own arrays, no copy.
        """
        size = batch_size or PREDICT_BATCH
        texts = inputs.data
        examples = self.in_documents([self.placeholder(t) for t in texts], inputs.documents)
        ids, labels, _ = self.encode(examples)
        pad = (self.tok().pad_token_id or 0) if len(ids) > 1 else 0  # one text: no padding
        for rows in length_sorted([len(x) for x in ids], size):
            batch = padded_batch(ids, labels, rows, pad)
            yield {"input_ids": batch[1].numpy(), "attention_mask": batch[2].numpy()}, batch

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 3
    ) -> dict[int, dict[str, Any]]:
        del top_k  # every class's probability is in a text row
        probs = softmax(logits)
        keep = word_starts(host_array(key[3]))
        return {
            i: self.text_row(inputs.data[i], probs[r], keep[r])
            for r, i in enumerate(host_array(key[0]).tolist())
        }

    def serving_limits(self, version_dir: Path) -> ServingLimits:
        """Token ids and row lengths the version can embed (see :func:`token_limits`)."""
        return token_limits(version_dir, self._maybe_tok())

    def _maybe_tok(self) -> Any:
        """The tokenizer if there is one to load, else None."""
        if self.tokenizer is None and self.tokenizer_source is None:
            return None
        return self.tok()

    def within(self, limits: ServingLimits) -> EncoderTask:
        """This task truncating texts to at most ``max_positions`` tokens.

        The predict endpoint tokenizes with the task: a task trained with a longer
        ``max_length`` than the model's position table would make a long text fail (400)
        instead of being cut, as ``tensorfab predict`` cuts it.
        """
        if limits.max_positions is None or self.max_length <= limits.max_positions:
            return self
        return dataclasses.replace(self, max_length=limits.max_positions)

    def hf_export(self, model: nn.Module, directory: Path) -> None:
        """The encoder with its head, labels and tokenizer as a Hugging Face model directory.

        The config names the labels (``id2label``/``label2id``), so a ``pipeline`` answers
        with tags, not ``LABEL_3``; the tokenizer is told the task's ``max_length``, so the
        pipeline truncates where ``tensorfab predict`` does.
        """
        config = model.config
        if getattr(config, POOLING_KEY, "cls") != "cls":
            raise no_hf_form(
                self.name,
                "its head reads the mean of the tokens; a Hugging Face sequence classifier "
                "reads the first token's pooler",
            )
        if hasattr(model, "members"):  # models/ensemble.py
            raise TensorfabError(
                "export --format hf: an ensemble runs several encoders and a Hugging Face "
                "model directory holds one; export a member's run, or the ensemble to ONNX "
                "(tensorfab export MODEL --repo REPO)"
            )
        config.id2label = dict(enumerate(self.classes))
        config.label2id = {label: i for i, label in enumerate(self.classes)}
        model.save_pretrained(str(directory))
        tokenizer = self.tok()
        tokenizer.model_max_length = self.max_length
        tokenizer.save_pretrained(str(directory))

    def forward_flops(self, model: nn.Module, count: TokenCount) -> float:
        config = getattr(model, "config", None)
        if config is None:
            return 0.0
        shape = EncoderShape.from_config(config, per_token_head=self.head == "token")
        members = len(getattr(model, "members", ())) or 1  # an ensemble runs each member
        return members * encoder_forward_flops(
            shape, count.token_sum, count.token_sq_sum, count.samples
        )


def length_sorted(lengths: Sequence[int], size: int) -> list[np.ndarray]:
    """Rows in batches of ``size``, longest first within windows of ``BUCKET_WINDOW``
    batches (ties in input order): the order of ``SequenceBatches(bucket=True)``'s
    evaluation epoch."""
    order = np.arange(len(lengths))
    if len(lengths) == 1:  # one text (a served request's usual): nothing to sort
        return [order]
    sizes = np.asarray(lengths)
    out = []
    for start in range(0, len(order), size * BUCKET_WINDOW):
        chunk = order[start : start + size * BUCKET_WINDOW]
        ranked = chunk[np.argsort(-sizes[chunk], kind="stable")]
        out += [ranked[i : i + size] for i in range(0, len(ranked), size)]
    return out


def padded_batch(ids: list[list[int]], labels: list[Any], rows: np.ndarray, pad_id: int) -> Batch:
    """(index, input_ids, attention_mask, labels) of ``rows``, padded to the longest (int64;
    per-token labels padded with ``IGNORE``), as tensors sharing the numpy arrays."""
    if len(rows) == 1:
        return _one_row(ids[rows[0]], labels[rows[0]], rows)
    width = max(len(ids[r]) for r in rows)
    tokens = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    per_token = isinstance(labels[rows[0]], (list, tuple))
    if per_token:
        tags = np.full((len(rows), width), IGNORE, dtype=np.int64)
    else:
        tags = np.array([labels[r] for r in rows], dtype=np.int64)
    for i, r in enumerate(rows.tolist()):
        n = len(ids[r])
        tokens[i, :n] = ids[r]
        mask[i, :n] = 1
        if per_token:
            tags[i, :n] = labels[r]
    index = rows.astype(np.int64)
    return tuple(torch.from_numpy(a) for a in (index, tokens, mask, tags))


def _one_row(ids: list[int], labels: Any, rows: np.ndarray) -> Batch:
    """:func:`padded_batch` of a single row: its arrays made at once, nothing padded."""
    tokens = np.array([ids], dtype=np.int64)
    mask = np.ones_like(tokens)
    tags = np.array([labels], dtype=np.int64)  # [1, T] per token, else [1]
    index = rows.astype(np.int64)
    return tuple(torch.from_numpy(a) for a in (index, tokens, mask, tags))


def host_array(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """A key's tensor as a numpy array on the host (no copy for a CPU tensor).

    A CPU tensor is read with ``numpy()`` alone: torch's ``detach``, ``cpu`` and operators
    release the GIL, and on a server's event loop each release waits to get it back from
    the compute thread (profiled: 40 us a call under load, twice a request)."""
    if not isinstance(values, torch.Tensor):
        return np.asarray(values)
    try:
        return values.numpy()
    except (RuntimeError, TypeError):  # on a GPU, or part of a graph
        return values.detach().cpu().numpy()


# what a file of texts is usually called: a predict argument of one word ending so, that
# names no file, is a mistyped path, not a text to predict
TEXT_FILE_SUFFIXES = (".txt", ".text", ".tsv", ".csv", ".jsonl", ".conll")


def _names_a_file(item: str) -> bool:
    """Whether a predict argument is a file of texts rather than a text: a sentence longer
    than a file name may be (255 bytes) made ``is_file`` raise "File name too long"."""
    try:
        return len(item) < 4096 and Path(item).is_file()
    except OSError:
        return False


def _argument_text(item: str, number: int) -> str:
    """A predict argument that is no file, as a text: a folder or a blank text is refused
    (as the server refuses an empty text), never predicted as if it were words."""
    try:
        folder = len(item) < 4096 and Path(item).is_dir()
    except OSError:
        folder = False
    if folder:
        raise TensorfabError(
            f"predict: {item}: is a directory; give a text or a file of texts (one a line)"
        )
    if not item.strip():
        raise TensorfabError(f"predict: argument {number}: empty text")
    if Path(item).suffix.lower() in TEXT_FILE_SUFFIXES and len(item.split()) == 1:
        raise TensorfabError(  # a mistyped file name would be predicted as a one-word text
            f"predict: {item}: no such file (to predict it as a text, add a space: '{item} ')"
        )
    check_unicode(item, f"predict: argument {number}")
    return item


def request_texts(body: bytes) -> list[str]:
    """The texts of a predict request body; TensorfabError names what is wrong with it."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TensorfabError(f"request body: malformed JSON ({exc})") from None
    texts = payload.get("instances") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        texts = [payload["text"]]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise TensorfabError(
            'request body: expected {"instances": ["text", ...]} or {"text": "..."}'
        )
    if len(texts) > MAX_TEXTS:
        raise TensorfabError(f"request body: {len(texts)} texts; at most {MAX_TEXTS} per request")
    if not all(t.strip() for t in texts):
        raise TensorfabError("request body: empty text")
    for i, text in enumerate(texts):
        check_unicode(text, f"request body: text {i}")
    return texts


def check_unicode(text: str, where: str) -> None:
    """Refuse a text that is not valid Unicode. JSON's ``\\udcff`` escapes and undecodable
    command-line bytes reach Python as lone surrogates, which the tokenizers cannot encode
    (a TypeError deep inside them, a 500 for a served request)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TensorfabError(
            f"{where}: not valid Unicode (a lone surrogate at character {exc.start})"
        ) from None


def token_limits(version_dir: Path, tokenizer: Any = None) -> ServingLimits:
    """The vocabulary size and the longest row a text model version can embed.

    Read once per load from the encoder's ``config.json``, which packages and every exported
    version hold, else from the tokenizer's vocabulary. The tokenizer's ``model_max_length``
    caps the positions too: models such as RoBERTa keep two of their position rows for
    padding, which the table's size alone does not show.
    """
    vocab, positions = encoder_config_limits(version_dir / ENCODER_CONFIG)
    if vocab is None and tokenizer is not None:
        vocab = len(tokenizer)
    told = getattr(tokenizer, "model_max_length", None)
    if isinstance(told, int) and 0 < told < SANE_MODEL_MAX_LENGTH:
        positions = told if positions is None else min(positions, told)
    return ServingLimits(vocab, positions)


def encoder_config_limits(config_file: Path) -> tuple[int | None, int | None]:
    """``vocab_size`` and ``max_position_embeddings`` of a Hugging Face config.json."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(config, dict):
        return None, None
    vocab, positions = config.get("vocab_size"), config.get("max_position_embeddings")
    return (
        vocab if isinstance(vocab, int) and vocab > 0 else None,
        positions if isinstance(positions, int) and positions > 0 else None,
    )


def activation_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose B input is computed, not a constant weight.

    onnxruntime's ``MatMulConstBOnly`` option is not applied by its QDQ quantizer, so the
    attention matmuls are excluded by name instead.
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] not in constants
    ]


def encoder_name(model_name: str) -> str:
    """The encoder (tokenizer source) of a text model name, or a clear error."""
    encoder = model_entry(model_name).meta.get("encoder")
    if encoder is None:
        raise TensorfabError(
            f"model.name {model_name!r} is not a text encoder; use minilm-l6, bert-tiny or "
            "hf:<local dir or cached hub id>"
        )
    return encoder


def train_count(ids: list[list[int]]) -> TokenCount:
    """Samples and real tokens of a training split (the count MFU divides by)."""
    return TokenCount(len(ids), float(sum(map(len, ids))), float(sum(len(x) ** 2 for x in ids)))


def encode_in_chunks(
    task: EncoderTask, split: str, examples: list[Any], progress: Progress | None
) -> tuple[list[list[int]], list[Any], int]:
    """:meth:`EncoderTask.encode_split` in chunks of ``ENCODE_CHUNK`` examples, so that
    ``progress(what, done, total, unit)`` can tell a person how far tokenizing is."""
    what, total = f"tokenizing {split} split", len(examples)
    if progress is not None:
        progress(what, 0, total, task.example_unit)
    ids: list[list[int]] = []
    labels: list[Any] = []
    cut = 0
    for start in range(0, total, ENCODE_CHUNK):
        chunk_ids, chunk_labels, chunk_cut = task.encode_split(
            split, examples[start : start + ENCODE_CHUNK]
        )
        ids += chunk_ids
        labels += chunk_labels
        cut += chunk_cut
        if progress is not None:
            progress(what, min(start + ENCODE_CHUNK, total), total, task.example_unit)
    return ids, labels, cut


def prepare_text(
    cls: type[EncoderTask],
    splits: TextSplits,
    *,
    model_name: str,
    max_length: int | None = None,
    task_args: dict[str, Any] | None = None,
    progress: Progress | None = None,
    **_: Any,
) -> Workload:
    """Tokenize every split once; batches are padded per batch when they are made.

    ``task_args``: the subclass's own fields (token classification's context and head).
    """
    tokenizer = load_tokenizer(encoder_name(model_name))
    limit = max_length or min(int(tokenizer.model_max_length), 512)
    task = cls(list(splits.labels), tokenizer, limit, **(task_args or {}))
    parts = {"train": splits.train, "eval": splits.eval, "test": splits.test}
    encoded = {k: encode_in_chunks(task, k, v, progress) for k, v in parts.items()}
    notes = [
        f"{k}: truncation to max_length {limit} cut {cut} {cls.cut_unit}"
        for k, (_, _, cut) in encoded.items()
        if cut
    ]
    per_token = cls.head == "token"

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> Any:
        ids, labels, _ = encoded[split]
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        # Evaluation order does not matter (scores are gathered by example index), so
        # evaluation batches are always length-sorted, and at most EVAL_BATCH rows each:
        # the engine's 1,024 rows made BANKING77's 1,001 validation queries (16 tokens on
        # average) one batch padded to the longest (98), 4x the time of 64-row batches.
        batch_size = batch_size if shuffle else min(batch_size, EVAL_BATCH)
        nbytes = resident_bytes(ids, per_token_labels=per_token)
        resident = where.resident == "on" or (
            where.resident == "auto" and sequences_fit(nbytes, where.device)
        )
        return SequenceBatches(
            ids,
            labels,
            batch_size,
            device=where.device,
            shuffle=shuffle,
            pad_id=tokenizer.pad_token_id or 0,
            seed=where.seed,
            bucket=where.bucket or not shuffle,
            pack_tokens=limit if where.pack and shuffle and per_token else None,
            resident=resident,
            **shard,
        )

    meta = {
        "labels": list(splits.labels),
        "input": {"kind": "text", "max_length": limit, "tokenizer": TOKENIZER_DIR},
        "preprocessing": {"tokenizer": encoder_name(model_name)},
        "task_config": task.config(),
    }
    return Workload(
        task,
        {"num_classes": len(splits.labels), "head": task.model_head()},
        {k: len(v) for k, v in parts.items()},
        meta,
        make_batches,
        save_assets=lambda d: tokenizer.save_pretrained(str(Path(d) / TOKENIZER_DIR)),
        notes=notes,
        train_count=train_count(encoded["train"][0]),
    )


def rebuild(
    cls: type[EncoderTask],
    classes: list[str],
    max_length: int,
    package_dir: str | None,
    encoder: str | None,
    **task_args: Any,
) -> EncoderTask:
    """A task from its package record; the tokenizer loads when first needed."""
    source = str(Path(package_dir) / TOKENIZER_DIR) if package_dir else encoder
    return cls(list(classes), None, max_length, source, **task_args)
