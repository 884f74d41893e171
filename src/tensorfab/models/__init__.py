"""Model families behind one front door: ``create_model(name, **kwargs)``."""

from tensorfab.models.encoders import layer_lr_scales, save_encoder_config
from tensorfab.models.registry import MODELS, create_model, model_entry

__all__ = ["MODELS", "create_model", "layer_lr_scales", "model_entry", "save_encoder_config"]
