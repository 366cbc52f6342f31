"""Watching a session over WebRTC with aiortc: the session's video and audio as a browser gets them
(optionally sending a microphone track, which then drives the avatar)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from facecast_client.ice import restrict_host_candidates, rtc_configuration


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
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        """host_addresses: the ICE host candidates offered (default 127.0.0.1 alone: a local server;
        pass [] for every interface). ice_servers: STUN/TURN, as a session's `ice_servers`."""
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers or []))
        self.host_addresses = ["127.0.0.1"] if host_addresses is None else host_addresses
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
