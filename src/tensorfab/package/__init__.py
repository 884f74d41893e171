"""The portable model package: ``tensorfab.json`` + ``weights.safetensors``."""

from tensorfab.package.io import (
    FORMAT_VERSION,
    LoadedPackage,
    load_package,
    resolve_model_dir,
    save_package,
    update_metrics,
)

__all__ = [
    "FORMAT_VERSION",
    "LoadedPackage",
    "load_package",
    "resolve_model_dir",
    "save_package",
    "update_metrics",
]
