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
    """Every module a source file imports (absolute names; relative imports resolved against `package`).

    `from X import y` counts as X and as X.y (y may be a submodule: `from facecast import models`).
    """
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
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def module_name(src: Path, path: Path) -> str:
    return ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")


def violations(src: Path, rules: dict[str, list[str]]) -> list[str]:
    """'module imports forbidden' for every import breaking `rules` in the tree under `src`."""
    out = []
    for path in sorted(src.rglob("*.py")):
        module = module_name(src, path)
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
    # The check read the real tree: every rule's owner has source, and the checker sees real imports.
    modules = {module_name(SRC, p) for p in SRC.rglob("*.py")}
    for owner in FORBIDDEN:
        assert any(m == owner or m.startswith(owner + ".") for m in modules), owner
    assert "facecast.stream.engine_runner imports facecast.engine" in violations(
        SRC, {"facecast.stream": ["facecast.engine"]}
    )


# One way to write an import per planted violation, lazy and relative ones included ({b}: the banned
# module; {rel}: the same, relative to the planting module's package, when it is inside facecast).
STYLES = [
    "import {b}\n",
    "from {b} import something\n",
    "def later():\n    import {b}.sub as alias\n",
    "def later():\n    from {rel} import thing\n",
    "import os, {b}\n",
]


# The rules of docs/architecture.md ("Layers"), each of which FORBIDDEN must hold.
REQUIRED = {
    "facecast.models": {"facecast.stream", "facecast.outputs", "facecast.server", "aiortc", "aiohttp"},
    "facecast.stream": {"facecast.models", "facecast.server", "torch"},
    "facecast.outputs": {"facecast.models", "facecast.stream", "facecast.server"},
    "facecast.engine": {"facecast.models", "facecast.stream", "facecast.outputs", "facecast.server"},
    "facecast.frames": {"facecast.models", "facecast.stream", "facecast.outputs", "facecast.server"},
}


def test_the_rules_hold_every_documented_layer() -> None:
    for owner, banned in REQUIRED.items():
        assert banned <= set(FORBIDDEN.get(owner, [])), (owner, banned - set(FORBIDDEN.get(owner, [])))


def test_the_checker_reports_a_planted_violation_of_every_rule(tmp_path: Path) -> None:
    planted: dict[tuple[str, str], str] = {}  # (owner, banned) -> the module that breaks it
    for owner, banned in FORBIDDEN.items():
        package_owner = owner in ("facecast.models", "facecast.stream", "facecast.outputs")
        for i, b in enumerate(banned):
            module = f"{owner}.planted_{i}" if package_owner else owner
            package = module.rsplit(".", 1)[0]
            style = STYLES[len(planted) % len(STYLES)]
            if "{rel}" in style and not b.startswith("facecast."):
                style = STYLES[0]  # only facecast's own modules can be imported relatively
            # relative to `package`: "." is package itself, each further dot one level up, to facecast
            rel = "." * (package.count(".") + 1) + b.removeprefix("facecast.")
            path = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(style.format(b=b, rel=rel))
            planted[(owner, b)] = module
        clean = tmp_path.joinpath(*owner.split("."), "clean.py") if package_owner else None
        if clean is not None:
            clean.write_text("import numpy\nfrom facecast.frames import OutputFrame\nfrom . import clean\n")
    found = violations(tmp_path, FORBIDDEN)
    for (owner, b), module in planted.items():
        hits = [
            v
            for v in found
            if v.startswith(f"{module} imports ") and (v.split()[-1] + ".").startswith(b + ".")
        ]
        assert hits, f"{module} breaks {owner} -/-> {b} unreported in {found}"
    assert not [v for v in found if ".clean " in v]
    assert len(planted) == sum(len(b) for b in FORBIDDEN.values())


def test_the_checker_sees_a_lazy_import_that_breaks_a_layer(tmp_path: Path) -> None:
    bad = tmp_path / "facecast" / "stream" / "sneaky.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "def f():\n    from facecast.models.render import engine\n    from ..server import app\n"
        "    from .. import models\n"
    )
    (tmp_path / "facecast" / "outputs").mkdir()
    (tmp_path / "facecast" / "outputs" / "ok.py").write_text("from facecast.frames import OutputFrame\n")
    assert violations(tmp_path, FORBIDDEN) == [
        "facecast.stream.sneaky imports facecast.models",
        "facecast.stream.sneaky imports facecast.models.render",
        "facecast.stream.sneaky imports facecast.models.render.engine",
        "facecast.stream.sneaky imports facecast.server",
        "facecast.stream.sneaky imports facecast.server.app",
    ]


def _loaded_by(module: str, path: Path | None = None) -> set[str]:
    """Every module a fresh interpreter holds after importing `module` (`path`: searched first)."""
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    if path is not None:
        code = f"import sys; sys.path.insert(0, {str(path)!r}); " + code
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def server_side(loaded: set[str]) -> set[str]:
    """What an engine must never load."""
    return ({"aiortc", "aiohttp"} & _tops(loaded)) | {
        m for m in loaded if m.startswith(("facecast.stream", "facecast.server", "facecast.outputs"))
    }


def engine_side(loaded: set[str]) -> set[str]:
    """What the real-time core and the outputs must never load."""
    return ({"torch", "diffusers", "transformers", "mediapipe"} & _tops(loaded)) | {
        m for m in loaded if m.startswith(("facecast.models", "facecast.server", "facecast.cli"))
    }


def heavy(loaded: set[str]) -> set[str]:
    """What `facecast --help` must not load."""
    return {"torch", "mediapipe", "aiortc"} & _tops(loaded)


def test_the_probe_sees_what_a_planted_import_loads(tmp_path: Path) -> None:
    """The fresh-interpreter checks below can fail: a module breaking every layer trips each of them."""
    (tmp_path / "planted_layer_breach.py").write_text(
        "import facecast.stream.session\nimport facecast.models.render.engine\nimport aiortc\n"
    )
    loaded = _loaded_by("planted_layer_breach", tmp_path)
    assert {"planted_layer_breach", "facecast.stream.session", "facecast.frames", "numpy"} <= loaded
    assert {"aiortc", "facecast.stream.session"} <= server_side(loaded)
    assert "facecast.models.render.engine" in engine_side(loaded)
    assert heavy(loaded) >= {"aiortc"}


@pytest.mark.parametrize(
    "module", ["facecast.models.render.engine", "facecast.models.aniportrait.streaming.engine"]
)
def test_engines_never_load_the_server_side(module: str) -> None:
    loaded = _loaded_by(module)
    assert {module, "facecast.engine", "facecast.frames"} <= loaded  # the probe saw the import
    assert server_side(loaded) == set()


@pytest.mark.parametrize(
    "module", ["facecast.stream.session", "facecast.outputs.webrtc", "facecast.outputs.recorder"]
)
def test_the_real_time_core_and_outputs_load_no_engine(module: str) -> None:
    loaded = _loaded_by(module)
    assert {module, "facecast.frames", "numpy"} <= loaded  # the probe saw the import
    assert engine_side(loaded) == set()


def test_cli_help_is_light() -> None:
    loaded = _loaded_by("facecast.__main__")
    assert {"facecast.__main__", "argparse"} <= loaded  # the probe saw the import
    assert heavy(loaded) == set()
