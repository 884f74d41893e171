"""The dataset registry and its front doors: ``create_dataset`` and ``load_eval_data``.

Each format module registers a builder under its format name. A builder takes plain
keyword arguments (``path``, ``test_path``, ``image_size``, ``channels``, ``test_fraction``,
``split_seed``, ``limit_train``, ``limit_test``) and declares only those it uses; the front
door passes each builder just those, so the engine can hand over every data field.
A format that can read a user's own test file registers it as ``eval_loader`` metadata.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from tensorfab.data.types import ImageData, ImageSplits
from tensorfab.errors import TensorfabError
from tensorfab.registry import Registry

# Image formats build ImageSplits, language formats TextSplits (text_types.py).
DATASETS = Registry[Any]("dataset")


def create_dataset(format: str, **kwargs: Any) -> ImageSplits:
    """Build the train/test splits of a registered format from plain keyword arguments.

    Arguments the builder does not take are dropped, and so are ``None`` values (the
    builder's default applies).
    """
    entry = DATASETS.get(format)
    return _call_accepted(entry.builder, f"dataset {format!r}", kwargs)


def load_eval_data(format: str, path: str, **kwargs: Any) -> tuple[ImageData, list[str] | None]:
    """Read a user's own labelled test data (``evaluate --data PATH``).

    Returns the data and the class names the file itself carries (an image folder's
    sub-folder names, with labels indexing them), or ``None`` where the file carries
    only label numbers (IDX).
    """
    entry = DATASETS.get(format)
    loader = entry.meta.get("eval_loader")
    if loader is None:
        readers = ", ".join(e.name for e in DATASETS if e.meta.get("eval_loader"))
        raise TensorfabError(
            f"dataset format {format!r} cannot read a file of your own; use one of: {readers}"
        )
    return _call_accepted(loader, f"{format} data {path}", {**kwargs, "path": path})


def _call_accepted(fn: Callable[..., Any], what: str, kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` with the non-None kwargs its signature names (all of them for **kw)."""
    signature = inspect.signature(fn)
    params = signature.parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    given = {
        k: v
        for k, v in kwargs.items()
        if v is not None and (takes_any or k in signature.parameters)
    }
    missing = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in given
    ]
    if missing:
        raise TensorfabError(f"{what} needs {', '.join(missing)} (data.{missing[0]} in a spec)")
    return fn(**given)
