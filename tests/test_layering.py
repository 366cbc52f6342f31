"""Dependencies point one way (docs/architecture.md):

    server ─► stream ─► outputs ─► frames          models ─► engine contract, frames
       └──────────────────────────► engine registry (engines by name, never imported by stream/outputs)

Checked twice: every import statement in the source (lazy ones inside functions included), and what
importing a package really loads, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# package -> module prefixes it must never import
FORBIDDEN = {
    "facecast.models": [
        "facecast.stream",
        "facecast.server",
        "facecast.outputs",
        "facecast.cli",
        "aiortc",
        "aiohttp",
    ],
    "facecast.stream": [
        "facecast.server",
        "facecast.models",
        "facecast.cli",
        "torch",
        "diffusers",
        "transformers",
    ],
    "facecast.outputs": ["facecast.models", "facecast.stream", "facecast.server", "facecast.cli", "torch"],
    "facecast.engine": ["facecast.models", "facecast.stream", "facecast.outputs", "facecast.server"],
    "facecast.frames": ["facecast.models", "facecast.stream", "facecast.outputs", "facecast.server"],
}


def imports_of(path: Path, package: str) -> set[str]:
    """Every module a source file imports (absolute names; relative imports resolved against `package`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
    return found


def violations(src: Path, rules: dict[str, list[str]]) -> list[str]:
    """'module imports forbidden' for every import breaking `rules` in the tree under `src`."""
    out = []
    for path in sorted(src.rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for owner, banned in rules.items():
            if module != owner and not module.startswith(owner + "."):
                continue
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            for name in sorted(imports_of(path, package)):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    out.append(f"{module} imports {name}")
    return out


def test_the_source_keeps_the_layers() -> None:
    assert violations(SRC, FORBIDDEN) == []


def test_the_checker_sees_a_lazy_import_that_breaks_a_layer(tmp_path: Path) -> None:
    bad = tmp_path / "facecast" / "stream" / "sneaky.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from facecast.models.render import engine\n    from ..server import app\n")
    (tmp_path / "facecast" / "outputs").mkdir()
    (tmp_path / "facecast" / "outputs" / "ok.py").write_text("from facecast.frames import OutputFrame\n")
    assert violations(tmp_path, FORBIDDEN) == [
        "facecast.stream.sneaky imports facecast.models.render",
        "facecast.stream.sneaky imports facecast.server",
    ]


def _loaded_by(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize(
    "module", ["facecast.models.render.engine", "facecast.models.aniportrait.streaming.engine"]
)
def test_engines_never_load_the_server_side(module: str) -> None:
    loaded = _loaded_by(module)
    assert not {"aiortc", "aiohttp"} & _tops(loaded)
    assert not {m for m in loaded if m.startswith(("facecast.stream", "facecast.server", "facecast.outputs"))}


@pytest.mark.parametrize(
    "module", ["facecast.stream.session", "facecast.outputs.webrtc", "facecast.outputs.recorder"]
)
def test_the_real_time_core_and_outputs_load_no_engine(module: str) -> None:
    loaded = _loaded_by(module)
    assert not {"torch", "diffusers", "transformers", "mediapipe"} & _tops(loaded)
    assert not {m for m in loaded if m.startswith(("facecast.models", "facecast.server"))}


def test_cli_help_is_light() -> None:
    assert not {"torch", "mediapipe", "aiortc"} & _tops(_loaded_by("facecast.__main__"))
