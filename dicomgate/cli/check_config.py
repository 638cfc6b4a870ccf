"""check-config: whether the configuration file reads, and which features it turns on."""

from __future__ import annotations

import argparse

from ..config import config_path, load


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.path or args.config)
    config = load(path)  # ConfigError -> every problem, exit 2 (in main)
    print(f"config OK: {path}")
    for feature, on in config.features().items():
        print(f"  {'on ' if on else 'off'}  {feature}")
    return 0
