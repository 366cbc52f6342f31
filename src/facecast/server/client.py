"""A small Python client for the facecast server: REST calls, a WebRTC viewer (aiortc) and the
WebSocket audio pusher. Used by the tests and the live benchmarks; handy for chat assistants."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from facecast.server.auth import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL
from facecast.server.ice import restrict_host_candidates, rtc_configuration


@dataclass
class Received:
    """What a viewer got: (arrival monotonic s, frame) per kind."""

    video: list[tuple[float, av.VideoFrame]] = field(default_factory=list)
    audio: list[tuple[float, av.AudioFrame]] = field(default_factory=list)
    first_video_at: asyncio.Event = field(default_factory=asyncio.Event)


class Viewer:
    """An aiortc peer that receives a session's video and audio (optionally sending a mic track)."""

    def __init__(
        self,
        host_addresses: list[str] | None = None,
        mic: MediaStreamTrack | None = None,
        keep_frames: bool = True,
    ) -> None:
        self.pc = RTCPeerConnection(rtc_configuration([]))
        self.host_addresses = host_addresses or ["127.0.0.1"]
        self.received = Received()
        self.keep_frames = keep_frames
        self.counts = {"video": 0, "audio": 0}
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.addTransceiver("video", direction="recvonly")
        if mic is not None:
            self.pc.addTransceiver(mic, direction="sendrecv")
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pull(track)))

    async def _pull(self, track: MediaStreamTrack) -> None:
        sink = self.received.video if track.kind == "video" else self.received.audio
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counts[track.kind] += 1
            if self.keep_frames:
                sink.append((time.monotonic(), frame))  # type: ignore[arg-type]
            if track.kind == "video":
                self.received.first_video_at.set()

    async def offer(self) -> str:
        restrict_host_candidates(self.pc, self.host_addresses)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class FacecastClient:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = aiohttp.ClientSession(headers=headers)

    async def close(self) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {body}")
            return body

    async def create_session(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", "/v1/sessions", json=body)
        return result

    async def watch(self, session_id: str, viewer: Viewer | None = None) -> Viewer:
        viewer = viewer or Viewer()
        answer = await self.call(
            "POST", f"/v1/sessions/{session_id}/webrtc", json={"sdp": await viewer.offer(), "type": "offer"}
        )
        await viewer.accept(answer["sdp"])
        return viewer

    async def audio_socket(
        self, session_id: str, token: str | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """The session's audio WebSocket, with this client's token (header) or `token` (e.g. the
        session's own), sent as a subprotocol the way a browser has to."""
        return await self.http.ws_connect(
            f"{self.base}/v1/sessions/{session_id}/audio", protocols=audio_subprotocols(token)
        )


def audio_subprotocols(token: str | None = None) -> tuple[str, ...]:
    """What a client offers on the audio WebSocket: `facecast`, and `facecast.bearer.<token>` to
    authenticate without headers (a browser's WebSocket cannot set them; URLs must not carry tokens)."""
    return (SUBPROTOCOL,) if token is None else (SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + token)


def pcm_s16le(audio: np.ndarray) -> bytes:
    """float32 [-1, 1] → s16le bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
