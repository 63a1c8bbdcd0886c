"""Typed run configs: schema, loading with overrides, and signature checks for builder args."""

from metacompose.config.errors import ConfigError, in_file, under
from metacompose.config.load import load_config, to_yaml
from metacompose.config.schema import (
    AlgoConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainerConfig,
)
from metacompose.config.validate import check_kwargs, validate
from metacompose.yaml_io import load_yaml

__all__ = [
    "AlgoConfig",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainerConfig",
    "check_kwargs",
    "in_file",
    "load_config",
    "load_yaml",
    "to_yaml",
    "under",
    "validate",
]
