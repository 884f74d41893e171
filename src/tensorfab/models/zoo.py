"""Models from installed zoos by name: ``tv:resnet50`` (torchvision), ``timm:vit_tiny_patch16_224``.

Neither zoo is a dependency; each is imported only when such a name is asked for, and
weights are never downloaded (``weights=None`` / ``pretrained=False``).
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.registry import Entry


def _import(module: str, name: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TensorfabError(
            f"model.name {name!r} needs the {module!r} package, which is not installed"
        ) from None


def _build_tv(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    tv = _import("torchvision.models", name)
    try:
        return tv.get_model(name.split(":", 1)[1], weights=None, num_classes=num_classes, **kwargs)
    except ValueError as exc:
        raise TensorfabError(f"model.name {name!r}: {exc}") from None


def _build_timm(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    timm = _import("timm", name)
    try:
        return timm.create_model(
            name.split(":", 1)[1], pretrained=False, num_classes=num_classes, **kwargs
        )
    except RuntimeError as exc:
        raise TensorfabError(f"model.name {name!r}: {exc}") from None


def zoo_entry(name: str) -> Entry[nn.Module]:
    """An entry for a zoo name; the builder ignores tensorfab's image_size argument."""
    build = _build_tv if name.startswith("tv:") else _build_timm

    def builder(num_classes: int = 10, in_channels: int = 3, image_size: int = 224, **kw: Any):
        if in_channels != 3 and name.startswith("timm:"):
            kw["in_chans"] = in_channels
        return build(name, num_classes=num_classes, **kw)

    return Entry(name, builder, {"task": "image-classification", "input": "image"})
