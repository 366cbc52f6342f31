"""An engine worker: a Ray actor, in a process of its own, serving the sessions placed on it.

Each worker runs the whole single-process server (server/app.py) on its own port: the sessions' engines,
clocks, encoders, recorders, pushes, WebRTC peers and event streams live there, exactly as in the default
mode. The front door (server/front_door.py) places sessions on workers through Ray, installs what a
session needs (its avatar, a background image) through Ray, and relays each session's API calls,
WebSockets and event streams to the worker's port; WebRTC media flows between the viewer and the
worker's own ICE addresses. Ray places the worker processes on machines by their resources (`num_cpus`,
or `num_gpus` for the AniPortrait engine), restarts them, and tells the front door when one dies.

The worker's API token is a secret only the front door holds: nothing reaches a worker but through it
(clients' tokens are checked at the front door).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import ray

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server


@ray.remote
class EngineWorker:
    """One worker process (create with `EngineWorker.options(num_cpus=..., ...).remote(settings, name)`)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.settings = settings
        self._server: RunningServer | None = None
        self._context: AbstractAsyncContextManager[RunningServer] | None = None
        self._closed = asyncio.Event()
        self._beacon: asyncio.Server | None = None

    async def start(self) -> dict[str, Any]:
        """Serves on a free port of this node's address; returns where, and what this worker is.

        The node's address and the ICE host addresses offered to viewers come from the environment of the
        node's `ray start` (FACECAST_WORKER_HOST, FACECAST_ICE_HOST: comma-separated), else Ray's address
        of the node: each node says where it is reached."""
        host = os.environ.get("FACECAST_WORKER_HOST") or ray.util.get_node_ip_address()
        ice = os.environ.get("FACECAST_ICE_HOST")
        ice_host_addresses = [a.strip() for a in ice.split(",") if a.strip()] if ice else [host]
        if self._beacon is None:
            # Connections held open and never written: when this process dies, the kernel closes them and
            # the front door knows at once (Ray's own news of a dead actor can take seconds).
            self._beacon = await asyncio.start_server(self._hold, host, 0)
        if self._server is None:
            settings = dataclasses.replace(
                self.settings,
                server=dataclasses.replace(self.settings.server, ice_host_addresses=ice_host_addresses),
            )
            self._context = running_server(settings, host=host, port=0, client_dir=None)
            self._server = await self._context.__aenter__()
        return {
            "name": self.name,
            "url": self._server.url,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "host": host,
            "beacon": self._beacon.sockets[0].getsockname()[1],
            "resources": ray.get_runtime_context().get_assigned_resources(),
        }

    async def load(self) -> dict[str, Any]:
        """Placement figures: sessions now, the most it takes, avatars it holds."""
        registry = self._running().registry
        return {
            "sessions": len(registry.sessions),
            "max_sessions": registry.max_sessions,
            "avatars": [a["id"] for a in registry.avatars.list()],
        }

    async def install_avatar(self, avatar_id: str, files: dict[str, bytes]) -> None:
        """A prepared avatar (the front door's store files), written whole under its id if not there yet."""
        _install_dir(self._running().registry.avatars.root / avatar_id, files)

    async def install_background(self, background_id: str, png: bytes) -> None:
        folder = self.settings.home / "backgrounds"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{background_id}.png"
        if not target.exists():
            with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as tmp:
                tmp.write(png)
            Path(tmp.name).replace(target)

    async def metrics(self) -> str:
        app = self._running().app
        from facecast.server.state import METRICS, REGISTRY

        return app[METRICS].render(app[REGISTRY])

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # the front door never writes: this returns when it hangs up
        writer.close()

    async def wait_closed(self) -> None:
        """Returns when the worker stops; the front door awaits it to learn at once that the worker died."""
        await self._closed.wait()

    async def stop(self) -> None:
        if self._beacon is not None:
            self._beacon.close()
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._context = self._server = None
        self._closed.set()

    def _running(self) -> RunningServer:
        if self._server is None:
            raise RuntimeError(f"worker {self.name} was not started")
        return self._server


def _install_dir(target: Path, files: dict[str, bytes]) -> None:
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name, data in files.items():
            (tmp / Path(name).name).write_bytes(data)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
