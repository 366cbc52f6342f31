"""The aiohttp application: /v1 API, WebRTC signalling, WHIP/WHEP, WebSocket ingest, metrics,
and the browser client (client_web/) at /."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from facecast.config import Settings, check_api_token
from facecast.server import (
    api_avatars,
    api_backgrounds,
    api_broadcast,
    api_outputs,
    api_sessions,
    frames_ws,
    front_door,
    openapi,
    speech_in,
    webrtc,
)
from facecast.server.access_log import install_access_log_filter
from facecast.server.auth import is_loopback, make_auth_middleware, make_cors_middleware
from facecast.server.cluster import Cluster
from facecast.server.errors import ApiError, clip, error_middleware, parse_body
from facecast.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from facecast.server.metrics import Metrics
from facecast.server.registry import Registry
from facecast.server.schemas import FaultRequest
from facecast.server.state import METRICS, REGISTRY

log = logging.getLogger(__name__)

REQUEST_OVERHEAD_BYTES = 64 * 1024  # multipart framing on top of the upload limit
TEST_HOOKS_ENV = "FACECAST_TEST_HOOKS"  # "1": serve the fault-injection route (soak and fault tests)


class UnsafeBindError(ValueError):
    pass


def default_client_dir() -> Path | None:
    """client_web/ of the source checkout (the package is installed editable from it)."""
    here = Path(__file__).resolve().parents[3] / "client_web"
    return here if here.is_dir() else None


def check_bind(settings: Settings, host: str) -> None:
    """Without an API token the server may only listen on loopback."""
    if check_api_token(settings.server.api_token) is None and not is_loopback(host):
        raise UnsafeBindError(
            f"refusing to listen on {host} without an API token: set server.api_token or FACECAST_API_TOKEN, "
            "or bind to 127.0.0.1"
        )


async def healthz(request: web.Request) -> web.Response:
    """ok, or degraded while any session has failed (it stays listed until deleted)."""
    registry = request.app[REGISTRY]
    failed = sum(live.runtime.failure is not None for live in registry.sessions.values())
    return web.json_response(
        {
            "status": "degraded" if failed else "ok",
            "sessions": len(registry.sessions),
            "failed": failed,
            "max_sessions": registry.max_sessions,
        }
    )


def openapi_handler(
    test_hooks: bool, cluster: bool = False
) -> Callable[[web.Request], Awaitable[web.Response]]:
    doc = openapi.document(test_hooks, cluster)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(doc)

    return openapi_json


async def inject_fault(request: web.Request) -> web.Response:
    """Test hook (FACECAST_TEST_HOOKS=1): make the session's engine raise on its next frame."""
    live = request.app[REGISTRY].get(request.match_info["sid"])
    body = await parse_body(request, FaultRequest)
    live.runtime.inject_engine_fault()
    return web.json_response({"injected": body.kind}, status=202)


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS].render(request.app[REGISTRY])
    # The exposition format's own content type (with its version parameter, which content_type= refuses).
    return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def create_app(
    settings: Settings, *, client_dir: Path | None = None, cluster: Cluster | None = None
) -> web.Application:
    """The server: sessions in this process, or, with `cluster` (connected), the front door of engine workers
    on a Ray cluster (server/front_door.py), with the same API."""
    registry = Registry(settings)
    install_access_log_filter()  # tokens in ?token= must not reach the access log
    app = web.Application(
        client_max_size=settings.server.max_upload_bytes + REQUEST_OVERHEAD_BYTES,
        middlewares=[
            make_cors_middleware(settings.server.cors_origins),
            error_middleware,
            make_auth_middleware(
                settings.server.api_token, cluster.session_tokens if cluster else registry.session_tokens
            ),
        ],
    )
    app[REGISTRY] = registry
    app[METRICS] = Metrics()
    client = client_dir or default_client_dir()
    test_hooks = os.environ.get(TEST_HOOKS_ENV) == "1"

    def session_routes(app: web.Application) -> None:
        """Everything about one session; in cluster mode these are relayed to its worker."""
        if test_hooks:
            app.router.add_post("/v1/sessions/{sid}/faults", inject_fault)
        api_outputs.add_routes(app)
        api_broadcast.add_routes(app)
        api_sessions.add_routes(app, client)
        webrtc.add_routes(app)
        speech_in.add_routes(app)
        frames_ws.add_routes(app)

    app.router.add_get("/v1/openapi.json", openapi_handler(test_hooks, cluster is not None))
    api_avatars.add_routes(app)
    api_backgrounds.add_routes(app)
    if cluster is None:
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        session_routes(app)
    else:
        front_door.add_routes(app, cluster, session_routes)
    # Last: whatever no route above matched. Under /v1 that is an unknown route (404 in the envelope);
    # elsewhere a file of the browser client.
    app.router.add_route("*", "/v1/{tail:.*}", _unknown_route)
    app.router.add_get("/{filename:.*}", _client_files(client), name="client")

    async def shutdown(app: web.Application) -> None:
        await app[REGISTRY].close_all()

    app.on_shutdown.append(shutdown)
    return app


async def _unknown_route(request: web.Request) -> web.Response:
    """404, or 405 naming the allowed methods when a route has this path (this route catches any method)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical.startswith("/v1/") and resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here",
            {"Allow": ", ".join(sorted(allowed))},
        )
    raise ApiError(404, "not_found", f"no such route: {request.method} {clip(request.path)}")


def _client_files(client: Path | None) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The browser client's files (index.html at /); a missing one is a 404 in the envelope."""
    root = client.resolve() if client is not None else None

    async def client_file(request: web.Request) -> web.StreamResponse:
        if root is None:
            raise ApiError(404, "no_client", "the browser client (client_web/) is not installed")
        path = (root / (request.match_info["filename"] or "index.html")).resolve()
        if not path.is_relative_to(root) or not path.is_file():  # resolve() undoes any ../ and links
            raise ApiError(404, "not_found", f"no such file: {clip(request.path)}")
        return web.FileResponse(path)

    return client_file
