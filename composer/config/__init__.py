"""Typed run configs: schema, loading with overrides, and signature checks for builder args."""

from composer.config.load import ConfigError, check_kwargs, load_config, to_yaml
from composer.config.schema import (
    AlgoConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainerConfig,
)

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
    "to_yaml",
]
