"""Sub-commands. Each module registers its own parser; heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import importlib

# (module under facecast.cli, its `register` adds one or more sub-commands)
COMMAND_MODULES = ["avatar", "render", "serve", "bench", "aniportrait"]


def register_all(sub: argparse._SubParsersAction) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"facecast.cli.{name}").register(sub)
