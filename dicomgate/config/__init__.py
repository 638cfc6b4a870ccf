"""Configuration: the only place that reads the TOML file or the environment."""

from .load import DEFAULT_PATH, ConfigError, config_path, load, parse
from .model import (
    Config,
    ConsoleConfig,
    DicomConfig,
    GatewayConfig,
    ImagesConfig,
    LogConfig,
    LoginConfig,
    LookupConfig,
    PacsConfig,
    QrConfig,
    ReportsConfig,
    ReportsHttpConfig,
    Secret,
    ShimConfig,
    TasksConfig,
    UpstreamConfig,
    ViewConfig,
)

__all__ = [
    "DEFAULT_PATH", "Config", "ConfigError", "ConsoleConfig", "DicomConfig", "GatewayConfig",
    "ImagesConfig", "LogConfig", "LoginConfig", "LookupConfig", "PacsConfig", "QrConfig",
    "ReportsConfig", "ReportsHttpConfig", "Secret", "ShimConfig", "TasksConfig",
    "UpstreamConfig", "ViewConfig", "config_path", "load", "parse",
]
