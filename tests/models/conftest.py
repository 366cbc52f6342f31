"""Prepared avatars shared by the model tests (mediapipe runs once per portrait per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecast.models.avatar import Avatar, AvatarStore


@pytest.fixture(scope="session")
def avatar_store(tmp_path_factory: pytest.TempPathFactory) -> AvatarStore:
    return AvatarStore(tmp_path_factory.mktemp("avatars"))


@pytest.fixture(scope="session")
def grace(avatar_store: AvatarStore, media_dir: Path) -> Avatar:
    return avatar_store.add((media_dir / "grace_hopper_512.png").read_bytes(), name="grace")


@pytest.fixture(scope="session")
def astronaut(avatar_store: AvatarStore, media_dir: Path) -> Avatar:
    return avatar_store.add((media_dir / "astronaut.png").read_bytes(), name="astronaut")
