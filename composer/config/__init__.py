"""Typed run configs: schema, loading with overrides, and signature checks for builder args."""

from composer.config.errors import ConfigError
from composer.config.load import check_kwargs, load_config, to_yaml
from composer.config.schema import (
    AlgoConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainerConfig,
)
from composer.config.validate import validate
from composer.config.yaml_io import load_yaml

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
    "load_config",
    "load_yaml",
    "to_yaml",
    "validate",
]
