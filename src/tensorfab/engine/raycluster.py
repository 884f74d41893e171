"""Attaching to Ray: the one place that imports it, connects, and says how to install it.

Ray is an optional extra (``pip install 'tensorfab[ray]'``); every Ray command comes through
:func:`import_ray`, so without it the user reads one line and the command exits 2. The
address is ``local`` (a private Ray started in this process: node address 127.0.0.1, no
dashboard, no usage statistics) or a cluster's address (``HOST:PORT``, ``ray://HOST:10001``),
as ``ray.init`` takes it; without one, ``RAY_ADDRESS``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from tensorfab.errors import TensorfabError

INSTALL = "pip install 'tensorfab[ray]'"
NAMESPACE = "tensorfab"


def import_ray() -> ModuleType:
    """``ray``, or one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise TensorfabError(f"Ray is not installed: {INSTALL}") from None
    return ray


def resolve_address(address: str | None) -> str:
    """The address given, else ``RAY_ADDRESS``; one line when neither is set."""
    chosen = address or os.environ.get("RAY_ADDRESS")
    if not chosen:
        raise TensorfabError(
            "--address: which Ray? give local, HOST:PORT or ray://HOST:10001 (or set RAY_ADDRESS)"
        )
    return chosen


def connect(address: str, num_gpus: int | None = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` on ``address`` (``local``: a private instance on 127.0.0.1)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False}
    if address == "local":
        options.update(
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            num_gpus=num_gpus,
            num_cpus=num_cpus,
        )
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TensorfabError(f"--address {address}: cannot attach to Ray ({first})") from None
    return ray
