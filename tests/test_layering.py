"""Dependencies point one way: server → stream → models (DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _imported_after(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize(
    "module",
    [
        "facecast.models",
        "facecast.models.talking_head",
        "facecast.models.avatar",
        "facecast.models.aniportrait",
    ],
)
def test_models_never_pull_in_the_server_side(module: str) -> None:
    assert not {"aiortc", "aiohttp"} & _imported_after(module)


@pytest.mark.parametrize(
    "module", ["facecast.stream", "facecast.stream.offline_render", "facecast.stream.mp4_writer"]
)
def test_stream_never_pulls_in_torch(module: str) -> None:
    assert not {"torch", "diffusers", "transformers"} & _imported_after(module)


def test_cli_help_is_light() -> None:
    assert not {"torch", "mediapipe", "aiortc"} & _imported_after("facecast.__main__")
