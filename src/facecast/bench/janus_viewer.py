"""Watching a Janus broadcast with aiortc: what a browser viewer of a broadcast gets.

The flow of Janus's HTTP API (as client_web/view.js does it in a browser): a Janus session, a handle on
janus.plugin.streaming, `watch` (Janus answers with an event carrying its SDP offer), an aiortc answer,
`start` with it. For a VideoRoom feed (`room` and `feed` given) the handle is on janus.plugin.videoroom
and `join` as a subscriber to that feed takes the place of `watch`; the rest is the same. ICE on 127.0.0.1 only (host candidates restricted, no STUN/TURN servers), as for the
facecast viewer (clients/python facecast_client.viewer.Viewer, which this mirrors).

Counts decoded video frames and audio frames with their arrival times (for frame rates), and keeps the
newest video frame (`last_video`) so a test can check what was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from facecast_client.ice import restrict_host_candidates, rtc_configuration

from facecast.server.janus import STREAMING_PLUGIN, VIDEOROOM_PLUGIN, JanusClient, JanusError

WATCH_TIMEOUT_S = 10.0


class JanusViewer:
    def __init__(
        self,
        janus_url: str,
        mountpoint: int | None = None,
        *,
        room: int | None = None,
        feed: int | None = None,
        api_secret: str | None = None,
        host_addresses: list[str] | None = None,
    ) -> None:
        """Watches `mountpoint` (Streaming), or subscribes to `feed` in `room` (VideoRoom)."""
        if (mountpoint is None) == (room is None or feed is None):
            raise ValueError("either a mountpoint, or a room and a feed")
        plugin = STREAMING_PLUGIN if mountpoint is not None else VIDEOROOM_PLUGIN
        self.janus = JanusClient(janus_url, plugin=plugin, api_secret=api_secret)
        self.mountpoint = mountpoint
        self.room = room
        self.feed = feed
        self.host_addresses = ["127.0.0.1"] if host_addresses is None else host_addresses
        self.pc = RTCPeerConnection(rtc_configuration([]))
        self.counts = {"video": 0, "audio": 0}
        self.arrivals: dict[str, list[float]] = {"video": [], "audio": []}  # monotonic s
        self.last_video: av.VideoFrame | None = None
        self.events: list[dict[str, Any]] = []  # Janus's events for this viewer (status, errors)
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    async def start(self, timeout_s: float = WATCH_TIMEOUT_S) -> None:
        """Watch the mountpoint (or join the room as the feed's subscriber): returns once the answer is sent
        (media follows once ICE and DTLS are up)."""
        await self.janus.open()
        if self.mountpoint is not None:
            body: dict[str, Any] = {"request": "watch", "id": self.mountpoint}
        else:  # the room's other publishers, if any, are left out: only this feed's streams
            body = {
                "request": "join",
                "ptype": "subscriber",
                "room": self.room,
                "streams": [{"feed": self.feed}],
            }
        await self.janus.message(body, what=f"watching {self._what}")
        offer = await self._wait_for_offer(timeout_s)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        restrict_host_candidates(self.pc, self.host_addresses)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        await self.janus.message({"request": "start"}, jsep=answer, what="starting the stream")
        self._tasks.append(asyncio.ensure_future(self._poll()))

    async def _wait_for_offer(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in await self.janus.events():
                self.events.append(event)
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(
                        f"Janus refused watching {self._what} (error {data.get('error_code')}: {data['error']})"
                    )
                if "jsep" in event:
                    return dict(event["jsep"])
        raise JanusError(f"Janus sent no offer for {self._what} within {timeout_s:g} s")

    @property
    def _what(self) -> str:
        if self.mountpoint is not None:
            return f"mountpoint {self.mountpoint}"
        return f"feed {self.feed} of room {self.room}"

    async def _poll(self) -> None:
        """Keeps the Janus session alive (each long poll is activity) and records its events."""
        with contextlib.suppress(JanusError):
            while True:
                self.events += await self.janus.events()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pull(track)))

    async def _pull(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counts[kind] += 1
            self.arrivals[kind].append(time.monotonic())
            if kind == "video":
                assert isinstance(frame, av.VideoFrame)
                self.last_video = frame

    def fps(self, kind: str = "video", since: float | None = None, until: float | None = None) -> float:
        """Frames per second of `kind` that arrived between `since` and `until` (monotonic s)."""
        times = [
            t for t in self.arrivals[kind] if (since is None or t >= since) and (until is None or t <= until)
        ]
        if since is not None and until is not None:
            return len(times) / max(until - since, 1e-6)
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await self.janus.close()
