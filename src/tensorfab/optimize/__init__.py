"""Optimize a model package for inference: ONNX export, INT8 quantization, parity reports."""

from tensorfab.optimize import backends  # noqa: F401  (registers every serving backend)
from tensorfab.optimize.export import ExportedModel, export_package
from tensorfab.optimize.parity import parity_report

__all__ = ["ExportedModel", "export_package", "parity_report"]
