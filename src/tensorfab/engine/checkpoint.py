"""Full training state to and from ``checkpoints/last.pt``, written atomically.

The file is written under a temporary name in the same folder, flushed to disk and then
renamed over the old one: a kill at any moment leaves either the previous complete
checkpoint or the new complete one. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read ``path`` with ``weights_only=True``; a file that is no checkpoint is one line.

    torch's own message for such a file advises re-loading with ``weights_only=False``,
    which runs arbitrary code from the file: that advice is never passed on.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise here
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise TensorfabError(f"{path}: not a readable checkpoint ({_reason(exc)})") from None
    if not isinstance(state, dict):
        raise TensorfabError(f"{path}: not a readable checkpoint (holds {type(state).__name__})")
    return state


def _reason(exc: BaseException) -> str:
    """The useful part of torch's load error: the unpickler's complaint or first sentence."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        text = "unpickling failed: " + text.split("WeightsUnpickler error:", 1)[1].strip()
    if not text:
        return "empty or truncated file" if isinstance(exc, EOFError) else type(exc).__name__
    first = text.splitlines()[0].split(". ")[0].rstrip(".")
    return first if "weights_only" not in first else type(exc).__name__
