"""The front door's relay of a session's calls to the engine worker that holds it (cluster mode).

HTTP requests and responses stream through as they are (an SSE event stream, a recording download, an
upload); WebSockets (audio in, frames out) are joined message by message. The client's credential was
checked at the front door; the worker is called with the cluster's own token. When the worker dies
under a stream, the client gets one last `error` event (`worker_lost`) before the stream ends, so it
learns why rather than seeing a dropped connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from facecast.server.cluster import Cluster, PlacedSession
from facecast.server.errors import ApiError

log = logging.getLogger(__name__)

# Not forwarded: per-connection headers, and the credential (the worker gets the cluster's token).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "authorization", "content-length",
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
    "sec-websocket-protocol",
}  # fmt: skip
LOST_WAIT_S = 1.5  # how long a broken stream waits for Ray to confirm that the worker died


def _headers(source: Any, token: str | None = None) -> dict[str, str]:
    headers = {k: v for k, v in source.items() if k.lower() not in HOP_BY_HOP}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class Relay:
    """Relays requests for placed sessions (one shared HTTP client pool)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """The handler of every relayed route."""
        session = self.cluster.session(request.match_info["sid"])
        self.check(session)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, session)
        return await self._http_call(request, session)

    async def fetch_json(self, request: web.Request, session: PlacedSession) -> dict[str, Any] | web.Response:
        """A GET of the worker's JSON at the request's path: the object, or the worker's error as it came."""
        self.check(session)
        headers = {"Authorization": f"Bearer {self.cluster.secret}"}
        try:
            async with self.http.get(session.worker.url + request.path_qs, headers=headers) as reply:
                body = await reply.read()
                if reply.status != 200:
                    return web.Response(status=reply.status, body=body, content_type=reply.content_type)
                data: dict[str, Any] = json.loads(body)
                return data
        except aiohttp.ClientError:
            raise await self._unreachable(session) from None

    def check(self, session: PlacedSession) -> None:
        """Refuses calls on a session that failed or is moving to another worker."""
        if session.failure is not None:
            raise ApiError(410, "session_failed", session.failure)
        if session.moving:
            message = "the session is being recreated on another engine worker; try again in a moment"
            raise ApiError(503, "session_moving", message, {"Retry-After": "1"})

    async def _http_call(self, request: web.Request, session: PlacedSession) -> web.StreamResponse:
        url = session.worker.url + request.path_qs
        body = request.content if request.body_exists else None
        try:
            upstream = await self.http.request(
                request.method, url, headers=_headers(request.headers, self.cluster.secret), data=body,
                allow_redirects=False,
            )  # fmt: skip
        except aiohttp.ClientError:
            raise await self._unreachable(session) from None
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.update(_headers(upstream.headers))
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, asyncio.IncompleteReadError):
                if upstream.content_type == "text/event-stream":
                    await response.write(_sse_error(session, await self._why(session)))
                return response
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, session: PlacedSession) -> web.StreamResponse:
        offered = [
            p.strip()
            for v in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in v.split(",")
            if p.strip()
        ]
        url = session.worker.url + request.path_qs
        try:
            upstream = await self.http.ws_connect(
                url, protocols=offered, headers=_headers(request.headers, self.cluster.secret), heartbeat=20
            )
        except aiohttp.WSServerHandshakeError as exc:
            return await self._refusal(request, session, exc.status)
        except aiohttp.ClientError:
            raise await self._unreachable(session) from None
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), heartbeat=20
        )
        await client.prepare(request)
        to_worker = asyncio.ensure_future(_pump(client, upstream))
        to_client = asyncio.ensure_future(_pump(upstream, client))
        await asyncio.wait({to_worker, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for pump in (to_worker, to_client):
            pump.cancel()
        if not to_client.done() or client.closed:  # the client left: the worker's side closes too
            await upstream.close()
        elif upstream.close_code in (None, 1006):  # the worker went away, not the session
            await client.send_str(json.dumps(_error_event(session, await self._why(session))))
            await client.close(code=1011, message=b"worker lost")
        else:
            await client.close(code=upstream.close_code or 1000)
        await upstream.close()
        return client

    async def _refusal(self, request: web.Request, session: PlacedSession, status: int) -> web.Response:
        """A handshake the worker refused: its error envelope, fetched without the upgrade."""
        headers = {k: v for k, v in _headers(request.headers, self.cluster.secret).items()}
        async with self.http.get(session.worker.url + request.path_qs, headers=headers) as reply:
            return web.Response(
                status=reply.status if reply.status >= 400 else status,
                body=await reply.read(),
                content_type=reply.content_type,
            )

    async def _unreachable(self, session: PlacedSession) -> ApiError:
        """410 for a session whose worker died (heard within LOST_WAIT_S), 503 while it is recreated
        elsewhere, else 502."""
        fate = await self.cluster.fate_of(session.id, LOST_WAIT_S)
        if fate is not None and session.failure is not None:
            return ApiError(410, "session_failed", session.failure)
        if fate is not None:
            return ApiError(503, "session_moved", fate, {"Retry-After": "1"})
        return ApiError(502, "worker_unreachable", f"the engine worker {session.worker.name} did not answer")

    async def _why(self, session: PlacedSession) -> str:
        fate = await self.cluster.fate_of(session.id, LOST_WAIT_S)
        return fate or f"the engine worker {session.worker.name} did not answer"


async def _pump(source: Any, sink: Any) -> None:
    """Messages from one WebSocket to the other until `source` closes."""
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.ERROR:
            break
        if sink.closed:
            break


def _error_event(session: PlacedSession, message: str) -> dict[str, Any]:
    return {
        "type": "error", "code": "worker_lost", "message": message, "session": session.id,
        "time": round(time.time(), 3),
    }  # fmt: skip


def _sse_error(session: PlacedSession, message: str) -> bytes:
    return f"event: error\ndata: {json.dumps(_error_event(session, message))}\n\n".encode()
