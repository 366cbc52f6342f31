"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from facecast.cli.errors import CliError
from facecast.config import ConfigError, Settings, load_settings


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (YAML, see configs/default.yaml)")
    parser.add_argument(
        "--store",
        type=Path,
        help="avatar store folder (default: $FACECAST_HOME/avatars or ~/.local/share/facecast/avatars)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def avatar_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.store) if args.store else settings.avatar_dir
