"""Fixtures for tests that need a real server on 127.0.0.1 (random port), default avatar prepared once.

Loaded for the whole suite by tests/conftest.py (pytest_plugins)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from facecast_client import FacecastClient

from facecast.config import Settings
from facecast.models.avatar import AvatarStore
from facecast.server.runner import RunningServer, running_server


@pytest.fixture(scope="session")
def live_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("facecast-home")
    AvatarStore(home / "avatars").default()
    return home


@pytest.fixture
def settings(live_home: Path) -> Settings:
    settings = Settings(home=live_home)
    settings.server.ice_host_addresses = ["127.0.0.1"]
    settings.render.size = 256
    return settings


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with running_server(settings) as srv:
        yield srv


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[FacecastClient]:
    api = FacecastClient(server.url, server.registry.settings.server.api_token)
    yield api
    await api.close()


@pytest.fixture
async def session(client: FacecastClient) -> AsyncIterator[str]:
    """A session on the live server (its id), deleted afterwards."""
    sid = (await client.create_session())["id"]
    yield sid
    await client.delete_session(sid)
