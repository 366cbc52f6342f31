"""Fixtures of the Lmk2Video tests (the audio/landmark tests keep theirs in their own modules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """2 shared cores: OpenMP spinning across threads makes tiny convolutions ~6x slower than 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
