"""Bearer-token auth, three kinds of token:

- the API token (server.api_token): everything under /v1;
- a session's own token (`token` in POST /v1/sessions): that session's WebSocket, events, WHIP and
  WHEP endpoints, view page and ICE servers (it can drive the avatar);
- a session's view token (`view_token`): watch only, for links that get shared (OBS): that session's
  WHEP offer and WHEP viewer DELETE, view page and ICE servers.

Tokens travel in the `Authorization: Bearer` header. The audio WebSocket also takes one as the
subprotocol `facecast.bearer.<token>` offered beside `facecast` (browsers cannot set its headers).
Only a view token may come in the URL (`?token=`, on the routes a shared view link opens): an API or
session token there is refused with 401.

A session token on any other route of its session is refused with 403, elsewhere with 401.
/metrics (it lists session ids) needs the API token too, unless none is set: then the server is
loopback-only (app.check_bind refuses any other address) and /metrics stays open for local scrapers."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from typing import Any

from aiohttp import web

from facecast.config import check_api_token
from facecast.server.errors import ApiError, error_response

# Route names whose session token / view token is accepted in place of the API token.
SESSION_TOKEN_ROUTES = {
    "audio_ws",
    "frames_ws",
    "whep",
    "whep_resource",
    "whip",
    "whip_resource",
    "view",
    "events",
    "ice_servers",
}
VIEW_TOKEN_ROUTES = {"whep", "whep_resource", "view", "ice_servers"}
METRICS_PATH = "/metrics"


def is_loopback(host: str) -> bool:
    """Whether listening on `host` reaches this machine only: by address, never by how the name looks
    ("127.0.0.1.attacker.example" is a name, and its owner decides where it points). A name counts only
    if every address it resolves to is loopback; one that does not resolve does not count."""
    literal = _ip_address(host)
    if literal is not None:
        return _loopback_address(literal)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):  # gaierror is an OSError; an over-long label is a UnicodeError
        return False
    addresses = [_ip_address(str(info[4][0])) for info in infos]
    return bool(addresses) and all(a is not None and _loopback_address(a) for a in addresses)


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _loopback_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Python 3.11 does not count ::ffff:127.0.0.1 (IPv4 loopback, IPv6-mapped) as loopback.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def token_fingerprint(token: str | None) -> str | None:
    """What a peer keeps of the credential that created it (peer deletion): a hash, so that live state,
    reprs and dumps never hold a usable token."""
    return hashlib.sha256(token.encode()).hexdigest() if token is not None else None


# Browsers cannot set headers on a WebSocket: the WebSockets take their token as a subprotocol
# offered beside "facecast" (as Kubernetes does), so it stays out of URLs and access logs.
WEBSOCKET_TOKEN_ROUTES = {"audio_ws", "frames_ws"}
SUBPROTOCOL = "facecast"
BEARER_SUBPROTOCOL_PREFIX = "facecast.bearer."


def presented_token(request: web.Request) -> str | None:
    """The token a request carries: the `Authorization: Bearer` header; else, on the audio WebSocket,
    a `facecast.bearer.<token>` subprotocol; else, on the routes a shared view link opens
    (VIEW_TOKEN_ROUTES), `?token=`, which only a view token may use."""
    return _presented(request)[0]


def _presented(request: web.Request) -> tuple[str | None, bool]:
    """The token and whether it came in the URL (then it must be a view token, never the API token or a
    session's own token: URLs end up in logs, histories and Referer headers)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    route = request.match_info.route.name
    if route in WEBSOCKET_TOKEN_ROUTES:
        return subprotocol_token(request), False
    if route in VIEW_TOKEN_ROUTES:
        return request.query.get("token"), True  # an OBS link can carry nothing else
    return None, False


def session_websocket(request: web.Request, **options: Any) -> web.WebSocketResponse:
    """A session WebSocket's response, answering the `facecast` subprotocol. A client that offers
    subprotocols without it is refused in words: a browser fails a handshake that answers none of its
    offers (and aiohttp would log the offer, token included)."""
    offered = offered_subprotocols(request)
    if offered and SUBPROTOCOL not in offered:
        raise ApiError(
            400, "bad_subprotocol", f"offer the '{SUBPROTOCOL}' subprotocol (beside facecast.bearer.<token>)"
        )
    return web.WebSocketResponse(heartbeat=20, protocols=(SUBPROTOCOL,), **options)


def offered_subprotocols(request: web.Request) -> list[str]:
    """The WebSocket subprotocols a client offers (Sec-WebSocket-Protocol, comma-separated)."""
    values = request.headers.getall("Sec-WebSocket-Protocol", [])
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def subprotocol_token(request: web.Request) -> str | None:
    for protocol in offered_subprotocols(request):
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :]
    return None


def same_token(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def make_auth_middleware(api_token: str | None, session_tokens: Any) -> Any:
    """`session_tokens(session_id) -> (token, view_token) | None` looks up a session's own tokens.

    Raises ConfigError for an empty or non-string api_token (settings made in code skip load_settings)."""
    api_token = check_api_token(api_token)

    def protected(request: web.Request) -> bool:
        return request.path.startswith("/v1/") or request.path == METRICS_PATH

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if api_token is None or not protected(request) or request.method == "OPTIONS":
            return await handler(request)
        token, in_url = _presented(request)  # in_url: only a view token may travel in a URL
        if same_token(token, api_token) and not in_url:
            return await handler(request)
        route = request.match_info.route.name
        sid = request.match_info.get("sid")
        tokens = session_tokens(sid) if sid and token is not None else None
        if tokens is not None:
            own, view = tokens
            if same_token(token, own) and not in_url:
                if route in SESSION_TOKEN_ROUTES:
                    return await handler(request)
                return error_response(
                    403,
                    "forbidden",
                    "a session's own token only opens its WebSocket, events, WHIP/WHEP and view page; "
                    "this call needs the API token",
                )
            if same_token(token, view):
                if route in VIEW_TOKEN_ROUTES:
                    return await handler(request)
                return error_response(
                    403, "forbidden", "a view token may only watch the session (WHEP and the view page)"
                )
        if token is None:
            return error_response(401, "unauthorized", "missing bearer token", {"WWW-Authenticate": "Bearer"})
        if in_url:
            message = "only a view token may be sent as ?token=; send this one as Authorization: Bearer"
            return error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
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
