"""Sub-commands. Each module registers its own parser; heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import importlib

# (module under facecast.cli, its `register` adds one or more sub-commands)
COMMAND_MODULES = ["avatar", "render", "serve", "bench", "aniportrait"]


def register_all(sub: argparse._SubParsersAction) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"facecast.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command still being written must not break the others
            if exc.name != f"facecast.cli.{name}":
                raise
            continue
        module.register(sub)
