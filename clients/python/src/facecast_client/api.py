"""The facecast server's public API as typed asyncio calls (REST, the session WebSockets, SSE, WebRTC).

async with FacecastClient("http://127.0.0.1:8080") as fc:
    session = await fc.create_session()
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

import aiohttp

from facecast_client.errors import BadRequest, FacecastError, SessionEnded, Unreachable, error_for_status
from facecast_client.streams import FrameStream, SpeechStream, audio_subprotocols
from facecast_client.viewer import Viewer


class SessionInfo(TypedDict, total=False):
    id: str
    avatar: str
    engine: str
    fps: int
    size: int
    state: str
    token: str  # drives the session (WebSockets, WHIP, events)
    view_token: str  # watch only (WHEP, the view page)
    ice_servers: list[dict[str, Any]]
    links: dict[str, str]
    worker: str  # the engine worker holding it (a cluster's front door only)
    failure: str  # why it failed (state "failed")


class FacecastClient:
    """One server. `token` is the API token (`Authorization: Bearer`), when the server has one."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a server URL is http(s)://HOST[:PORT], not {base_url!r}")
        self.base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)

    async def __aenter__(self) -> FacecastClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.close()

    @property
    def is_local(self) -> bool:
        """Whether the server is on this machine's loopback (then WebRTC offers 127.0.0.1 alone)."""
        host = urlsplit(self.base).hostname or ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    # -- plumbing --------------------------------------------------------------------------------------

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON (or text) reply, or the server's error as a typed FacecastError."""
        try:
            async with self.http.request(method, self.base + path, **kwargs) as resp:
                if resp.content_type == "application/json":
                    body = await resp.json()
                else:
                    body = await resp.text()
                if resp.status >= 400:
                    raise _http_error(resp.status, body, resp.headers.get("Retry-After"))
                return body
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable("unreachable", f"no facecast server answered at {self.base}: {exc}") from None

    async def _websocket(self, path: str, token: str | None) -> aiohttp.ClientWebSocketResponse:
        url = "ws" + self.base[4:] + path
        try:
            return await self.http.ws_connect(
                url, protocols=audio_subprotocols(token), timeout=self._ws_timeout, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise await self._refusal(path, token, exc) from None
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable("unreachable", f"no facecast server answered at {self.base}: {exc}") from None

    async def _refusal(
        self, path: str, token: str | None, exc: aiohttp.WSServerHandshakeError
    ) -> FacecastError:
        """Why a WebSocket was refused: aiohttp keeps no body of a failed handshake, so the same request
        without the upgrade fetches the server's error envelope (its code), once, on failure only."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            async with self.http.get(self.base + path, headers=headers) as resp:
                if resp.status >= 400 and resp.content_type == "application/json":
                    return _http_error(resp.status, await resp.json(), resp.headers.get("Retry-After"))
        except aiohttp.ClientError:
            pass
        return error_for_status(exc.status, f"http_{exc.status}", f"{path}: {exc.message}")

    # -- server, avatars -------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", "/healthz")
        return result

    async def add_avatar(self, image: Path | str | bytes, name: str | None = None) -> dict[str, Any]:
        """Upload a portrait (a path or the file's bytes); the prepared avatar (same photo: same id)."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        form = aiohttp.FormData()
        form.add_field("image", data, filename="portrait", content_type="application/octet-stream")
        if name is not None:
            form.add_field("name", name)
        result: dict[str, Any] = await self.call("POST", "/v1/avatars", data=form)
        return result

    async def resolve_avatar(self, avatar: str | Path | None) -> str | None:
        """An avatar id as given, a photo's path uploaded (its id), or None for the server's default."""
        if avatar is None:
            return None
        path = Path(avatar).expanduser()
        if not (isinstance(avatar, Path) or path.is_file()):
            return str(avatar)
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise BadRequest(
                "unreadable_photo", f"the photo {str(avatar)!r} could not be read ({reason})"
            ) from None
        return str((await self.add_avatar(data))["id"])

    async def list_avatars(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/avatars"))["avatars"])

    async def get_avatar(self, avatar_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/v1/avatars/{avatar_id}")
        return result

    async def delete_avatar(self, avatar_id: str) -> None:
        await self.call("DELETE", f"/v1/avatars/{avatar_id}")

    # -- background images -----------------------------------------------------------------------------

    async def add_background(self, image: Path | str | bytes) -> dict[str, Any]:
        """Upload a background image (a path or the file's bytes); its `id` (same picture: same id) and
        `background`, the spec a session takes (`create_session(background=...)`: `image:<id>`)."""
        data = image if isinstance(image, bytes) else Path(image).expanduser().read_bytes()
        form = aiohttp.FormData()
        form.add_field("image", data, filename="background", content_type="application/octet-stream")
        result: dict[str, Any] = await self.call("POST", "/v1/backgrounds", data=form)
        return result

    async def backgrounds(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/backgrounds"))["backgrounds"])

    async def get_background(self, background_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/v1/backgrounds/{background_id}")
        return result

    async def delete_background(self, background_id: str) -> None:
        """Delete a background image; sessions already showing it keep it."""
        await self.call("DELETE", f"/v1/backgrounds/{background_id}")

    # -- sessions --------------------------------------------------------------------------------------

    async def create_session(
        self,
        avatar: str | None = None,
        engine: str | None = None,
        fps: int | None = None,
        background: str | None = None,
    ) -> SessionInfo:
        """background (warp engine): keep, color:#RRGGBB, blur, image:<id> (add_background) or transparent
        (alpha packed beside the colour, for the view page); default: the server's."""
        given = (("avatar", avatar), ("engine", engine), ("fps", fps), ("background", background))
        body = {k: v for k, v in given if v is not None}
        result: SessionInfo = await self.call("POST", "/v1/sessions", json=body)
        return result

    async def get_session(self, session_id: str) -> SessionInfo:
        result: SessionInfo = await self.call("GET", f"/v1/sessions/{session_id}")
        return result

    async def list_sessions(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/sessions"))["sessions"])

    async def delete_session(self, session_id: str) -> None:
        await self.call("DELETE", f"/v1/sessions/{session_id}")

    async def say(self, session_id: str, text: str, voice: str | None = None) -> dict[str, Any]:
        body = {"text": text} | ({"voice": voice} if voice else {})
        result: dict[str, Any] = await self.call("POST", f"/v1/sessions/{session_id}/say", json=body)
        return result

    async def play_file(self, session_id: str, audio: Path | str | bytes) -> dict[str, Any]:
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        form = aiohttp.FormData()
        form.add_field("file", data, filename="speech", content_type="application/octet-stream")
        result: dict[str, Any] = await self.call("POST", f"/v1/sessions/{session_id}/audio", data=form)
        return result

    async def interrupt(self, session_id: str) -> int:
        """Stop speaking now; the session's new generation."""
        return int((await self.call("POST", f"/v1/sessions/{session_id}/interrupt"))["generation"])

    async def recording(self, session_id: str, action: Literal["start", "stop"]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "POST", f"/v1/sessions/{session_id}/recording", json={"action": action}
        )
        return result

    async def push(self, session_id: str, url: str) -> dict[str, Any]:
        """Push the session live to an rtmp://, rtmps:// or srt:// URL; answers once it is connected."""
        result: dict[str, Any] = await self.call(
            "POST", f"/v1/sessions/{session_id}/outputs", json={"url": url}
        )
        return result

    async def outputs(self, session_id: str) -> list[dict[str, Any]]:
        """The session's pushes: state (live, reconnecting...), bitrate, reconnects."""
        return list((await self.call("GET", f"/v1/sessions/{session_id}/outputs"))["outputs"])

    async def stop_push(self, session_id: str, output_id: str) -> None:
        await self.call("DELETE", f"/v1/sessions/{session_id}/outputs/{output_id}")

    async def download_recording(self, session_id: str, path: Path | str) -> Path:
        try:
            async with self.http.get(f"{self.base}/v1/sessions/{session_id}/recording") as resp:
                if resp.status >= 400:
                    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
                    raise _http_error(resp.status, body, None)
                Path(path).write_bytes(await resp.read())
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable("unreachable", f"no facecast server answered at {self.base}: {exc}") from None
        return Path(path)

    # -- streams ---------------------------------------------------------------------------------------

    async def speech(self, session_id: str, token: str | None = None) -> SpeechStream:
        """The session's audio WebSocket (speech in, events back). `token`: e.g. the session's own, sent as
        a subprotocol; without it the client's API token goes in the header."""
        return SpeechStream(await self._websocket(f"/v1/sessions/{session_id}/audio", token))

    async def frames(
        self,
        session_id: str,
        image: Literal["jpeg", "rgb24"] = "jpeg",
        quality: int = 85,
        token: str | None = None,
    ) -> FrameStream:
        """The session's frames WebSocket: each image with its audio. rgb24 costs no encoding (local servers)."""
        path = f"/v1/sessions/{session_id}/frames?image={image}&quality={quality}"
        return FrameStream(await self._websocket(path, token))

    async def audio_socket(
        self, session_id: str, token: str | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """The raw audio WebSocket (for speaking the protocol by hand)."""
        return await self._websocket(f"/v1/sessions/{session_id}/audio", token)

    async def events(self, session_id: str) -> AsyncIterator[dict[str, Any]]:
        """The session's events as Server-Sent Events, until the session or the server ends them."""
        try:
            async with self.http.get(
                f"{self.base}/v1/sessions/{session_id}/events", timeout=aiohttp.ClientTimeout(total=None)
            ) as resp:
                if resp.status >= 400:
                    raise _http_error(resp.status, await resp.json(), None)
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        yield json.loads(line[6:])
        except aiohttp.ClientConnectionError as exc:
            raise SessionEnded("server_gone", f"the event stream ended: {exc}") from None

    async def watch(self, session_id: str, viewer: Viewer | None = None) -> Viewer:
        """Receive the session's video and audio over WebRTC (aiortc)."""
        viewer = viewer or Viewer(host_addresses=["127.0.0.1"] if self.is_local else [])
        answer = await self.call(
            "POST", f"/v1/sessions/{session_id}/webrtc", json={"sdp": await viewer.offer(), "type": "offer"}
        )
        await viewer.accept(answer["sdp"])
        return viewer


def _http_error(status: int, body: Any, retry_after: str | None) -> FacecastError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "code" in error:
        code, message = str(error["code"]), str(error.get("message", ""))
    else:  # not facecast's envelope (a proxy, another server)
        code, message = f"http_{status}", (str(body)[:200] or "no body")
    seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    return error_for_status(status, code, message, seconds)
