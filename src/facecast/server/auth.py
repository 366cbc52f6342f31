"""Bearer-token auth, three kinds of token:

- the API token (server.api_token): everything under /v1;
- a session's own token (`token` in POST /v1/sessions): that session's WebSocket, events, WHIP and
  WHEP endpoints, view page and ICE servers (it can drive the avatar);
- a session's view token (`view_token`): watch only, for links that get shared (OBS): that session's
  WHEP offer and WHEP viewer DELETE, view page and ICE servers.

A session token on any other route of its session is refused with 403, elsewhere with 401."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from facecast.server.errors import error_response

# Route names whose session token / view token is accepted in place of the API token.
SESSION_TOKEN_ROUTES = {
    "audio_ws",
    "whep",
    "whep_resource",
    "whip",
    "whip_resource",
    "view",
    "events",
    "ice_servers",
}
VIEW_TOKEN_ROUTES = {"whep", "whep_resource", "view", "ice_servers"}
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")  # browsers cannot set headers on WebSocket / EventSource


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def make_auth_middleware(api_token: str | None, session_tokens: Any) -> Any:
    """`session_tokens(session_id) -> (token, view_token) | None` looks up a session's own tokens."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if api_token is None or not request.path.startswith("/v1/") or request.method == "OPTIONS":
            return await handler(request)
        token = presented_token(request)
        if _same(token, api_token):
            return await handler(request)
        route = request.match_info.route.name
        sid = request.match_info.get("sid")
        tokens = session_tokens(sid) if sid and token is not None else None
        if tokens is not None:
            own, view = tokens
            if _same(token, own):
                if route in SESSION_TOKEN_ROUTES:
                    return await handler(request)
                return error_response(
                    403,
                    "forbidden",
                    "a session's own token only opens its WebSocket, events, WHIP/WHEP and view page; "
                    "this call needs the API token",
                )
            if _same(token, view):
                if route in VIEW_TOKEN_ROUTES:
                    return await handler(request)
                return error_response(
                    403, "forbidden", "a view token may only watch the session (WHEP and the view page)"
                )
        if token is None:
            return error_response(401, "unauthorized", "missing bearer token", {"WWW-Authenticate": "Bearer"})
        return error_response(401, "unauthorized", "wrong token", {"WWW-Authenticate": "Bearer"})

    return auth_middleware


def make_cors_middleware(origins: list[str]) -> Any:
    allowed = set(origins)

    @web.middleware
    async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS" and ok:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if ok and origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, PATCH, OPTIONS"
            response.headers["Access-Control-Expose-Headers"] = "Location, Link"
        return response

    return cors_middleware
