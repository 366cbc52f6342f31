"""The aiohttp application: /v1 API, WebRTC signalling, WHIP/WHEP, WebSocket ingest, metrics,
and the browser client (client_web/) at /."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from facecast.config import Settings
from facecast.server import api_avatars, api_sessions, speech_in, webrtc
from facecast.server.access_log import install_access_log_filter
from facecast.server.auth import is_loopback, make_auth_middleware, make_cors_middleware
from facecast.server.errors import error_middleware
from facecast.server.metrics import Metrics
from facecast.server.registry import Registry
from facecast.server.state import METRICS, REGISTRY

log = logging.getLogger(__name__)

REQUEST_OVERHEAD_BYTES = 64 * 1024  # multipart framing on top of the upload limit


class UnsafeBindError(ValueError):
    pass


def default_client_dir() -> Path | None:
    """client_web/ of the source checkout (the package is installed editable from it)."""
    here = Path(__file__).resolve().parents[3] / "client_web"
    return here if here.is_dir() else None


def check_bind(settings: Settings, host: str) -> None:
    """Without an API token the server may only listen on loopback."""
    if settings.server.api_token is None and not is_loopback(host):
        raise UnsafeBindError(
            f"refusing to listen on {host} without an API token: set server.api_token or FACECAST_API_TOKEN, "
            "or bind to 127.0.0.1"
        )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "sessions": len(request.app[REGISTRY].sessions)})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS].render(request.app[REGISTRY])
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"X-Format": "prometheus"}
    )


def create_app(settings: Settings, *, client_dir: Path | None = None) -> web.Application:
    registry = Registry(settings)
    install_access_log_filter()  # tokens in ?token= must not reach the access log
    app = web.Application(
        client_max_size=settings.server.max_upload_bytes + REQUEST_OVERHEAD_BYTES,
        middlewares=[
            make_cors_middleware(settings.server.cors_origins),
            error_middleware,
            make_auth_middleware(settings.server.api_token, registry.session_tokens),
        ],
    )
    app[REGISTRY] = registry
    app[METRICS] = Metrics()
    client = client_dir or default_client_dir()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    api_avatars.add_routes(app)
    api_sessions.add_routes(app, client)
    webrtc.add_routes(app)
    speech_in.add_routes(app)
    if client is not None:
        app.router.add_get("/", _index(client))
        app.router.add_static("/", client, name="client")

    async def shutdown(app: web.Application) -> None:
        await app[REGISTRY].close_all()

    app.on_shutdown.append(shutdown)
    return app


def _index(client: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def index(request: web.Request) -> web.StreamResponse:
        page = client / "index.html"
        if not page.is_file():
            return web.Response(
                text="facecast server: the browser client is not installed", content_type="text/plain"
            )
        return web.FileResponse(page)

    return index
