"""`./facecast` at the repository root runs the venv's command, so the README's command lines work as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "facecast"


def test_launcher_runs_the_venv_command() -> None:
    assert os.access(LAUNCHER, os.X_OK)
    done = subprocess.run([str(LAUNCHER), "--help"], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: facecast")


def test_launcher_without_a_venv_says_to_run_make_install(tmp_path: Path) -> None:
    shutil.copy2(LAUNCHER, tmp_path / "facecast")
    done = subprocess.run([str(tmp_path / "facecast"), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "make install" in lines[0]


def test_readme_command_lines_use_the_launcher() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Command line") : readme.index("### The live API")]
    commands = re.findall(r"(?m)^\S*facecast \S+", section)
    assert len(commands) > 10
    assert all(c.startswith("./facecast ") for c in commands), commands
