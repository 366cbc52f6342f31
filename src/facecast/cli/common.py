"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from facecast.cli.errors import CliError
from facecast.config import MAX_SIZE, MIN_SIZE, ConfigError, Settings, load_settings

SIZE_RANGE = f"an even number from {MIN_SIZE} to {MAX_SIZE}"


def frame_size(text: str) -> int:
    """argparse type of every --size: square pixels, an even number from MIN_SIZE to MAX_SIZE."""
    try:
        value = int(text)
    except ValueError:
        value = 0  # refused below, with the same sentence
    if not MIN_SIZE <= value <= MAX_SIZE or value % 2:
        raise argparse.ArgumentTypeError(f"the size in pixels must be {SIZE_RANGE}, not '{text}'")
    return value


def add_size_option(
    parser: argparse.ArgumentParser, what: str, default_note: str, default: int | None = None
) -> None:
    """--size with the one range every command accepts, stated in its --help."""
    parser.add_argument(
        "--size",
        type=frame_size,
        default=default,
        metavar="PX",
        help=f"{what}, {SIZE_RANGE} ({default_note})",
    )


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
