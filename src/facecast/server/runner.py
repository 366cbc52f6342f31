"""Run the server inside an existing event loop (tests, benchmarks, embedding)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from facecast.config import Settings
from facecast.server.app import check_bind, create_app
from facecast.server.cluster import Cluster
from facecast.server.registry import Registry
from facecast.server.state import REGISTRY


@dataclass
class RunningServer:
    app: web.Application
    url: str  # http://host:port

    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]


@asynccontextmanager
async def running_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 0,
    client_dir: Path | None = None,
    cluster: Cluster | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve on host:port (0 = any free port) until the block exits (cluster: connected, see app.create_app)."""
    check_bind(settings, host)
    settings.server.host = host  # where it listens decides its default ICE host candidates
    app = create_app(settings, client_dir=client_dir, cluster=cluster)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield RunningServer(app=app, url=f"http://{host}:{bound}")
    finally:
        await runner.cleanup()
