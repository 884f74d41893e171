"""The model registry: name -> builder plus frozen metadata (task, input, tiny test args).

Names of installed third-party zoos work too: ``tv:<name>`` for torchvision and
``timm:<name>`` for timm, imported only when asked for.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.registry import Entry, Registry

MODELS: Registry[nn.Module] = Registry("model")


def _load_families() -> None:
    # Importing a family module registers its builders; kept here so the registry
    # module itself has no import cycle with the families.
    from tensorfab.models import encoders, lenet, recommenders, resnet, tabular, zoo  # noqa: F401


def model_entry(name: str) -> Entry[nn.Module]:
    """The registry entry for ``name`` (zoo names get a synthetic entry)."""
    _load_families()
    if name.startswith("hf:"):
        from tensorfab.models.encoders import hf_entry

        return hf_entry(name)
    if name.startswith(("tv:", "timm:")):
        from tensorfab.models.zoo import zoo_entry

        return zoo_entry(name)
    return MODELS.get(name)


def create_model(
    name: str, encoder_config: Path | None = None, ensemble: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a model by registry name with plain keyword arguments.

    ``ensemble``: that many members built alike, run as one (``models/ensemble.py``); a
    package made by ``tensorfab ensemble`` records it in ``model.args``.

    ``encoder_config``: the folder of a saved Hugging Face ``config.json`` (a model
    package's ``encoder/``); the entry rebuilds its architecture from it with fresh
    weights (its ``from_encoder_config``), so neither the pretrained encoder nor a hub
    cache is needed. Entries without one refuse it.
    """
    entry = model_entry(name)
    builder = entry.builder
    if encoder_config is not None:
        if "from_encoder_config" not in entry.meta:
            raise TensorfabError(f"model {name!r}: cannot be rebuilt from {encoder_config}")
        builder = partial(entry.meta["from_encoder_config"], encoder_config)
    try:
        if ensemble is not None:
            from tensorfab.models.ensemble import Ensemble

            return Ensemble([builder(**kwargs) for _ in range(ensemble)])
        return builder(**kwargs)
    except (TypeError, ValueError) as exc:  # a bad argument, e.g. lenet's image_size < 16
        raise TensorfabError(f"model.args for {name!r}: {exc}") from None
