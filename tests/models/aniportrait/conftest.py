"""Fixtures of the Lmk2Video tests (the audio/landmark tests keep theirs in their own modules)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture
def linked_fixture(fixture_a: Path, tmp_path: Path) -> Callable[..., Path]:
    """make(omit=(...)) → a fixture-shaped folder of symlinks to fixture A's files minus `omit` (relative paths)."""

    def make(*, omit: tuple[str, ...] = (), name: str = "fx") -> Path:
        dest = tmp_path / name
        for src in fixture_a.rglob("*"):
            rel = str(src.relative_to(fixture_a))
            if src.is_dir() or any(rel == o or rel.startswith(o + "/") for o in omit):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(src)
        return dest

    return make
