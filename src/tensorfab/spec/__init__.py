"""The job spec: pydantic models, YAML loading, ``--set`` overrides, field-named errors."""

from tensorfab.spec.load import dump_spec, load_spec, load_yaml_model, parse_spec
from tensorfab.spec.schema import (
    DataSpec,
    EarlyStoppingSpec,
    JobSpec,
    ModelSpec,
    OutputSpec,
    TrainSpec,
)

__all__ = [
    "DataSpec",
    "EarlyStoppingSpec",
    "JobSpec",
    "ModelSpec",
    "OutputSpec",
    "TrainSpec",
    "dump_spec",
    "load_spec",
    "load_yaml_model",
    "parse_spec",
]
