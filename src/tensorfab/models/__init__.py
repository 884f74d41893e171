"""Model families behind one front door: ``create_model(name, **kwargs)``."""

from tensorfab.models.registry import MODELS, create_model, model_entry

__all__ = ["MODELS", "create_model", "model_entry"]
