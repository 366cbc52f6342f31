"""/v1/sessions/{id}/broadcast: a session fanned out to any number of viewers through Janus.

    POST {"action": "start"}   201 {"state": "live", "janus": URL, "mountpoint": ID, "watch": {...}}
    POST {"action": "start", "to": "videoroom"}
                               201 {"state": "live", "to": "videoroom", "janus": URL, "room": ID, "feed": ID,
                                    "watch": {...}}
    POST {"action": "stop"}    200 {"state": "stopped", ...}
    GET                        200 {"state": "none" | "live" | "stopped" | "failed", ...}

Starting one opens a Janus session (server/janus.py), creates an RTP mountpoint on Janus's Streaming
plugin (H.264 + Opus; Janus picks its ports, or `mountpoint` names its id) and adds a JanusRtpOutput to
the session, which sends the session's already-encoded media there (outputs/janus_rtp.py); the video's
RTCP port brings Janus's keyframe requests (a PLI when a viewer starts watching) back to the session's
encoder, so a viewer joining mid-stream need not wait for the next periodic keyframe. Viewers watch
the mountpoint through Janus (the view page with ?janus=URL&mountpoint=ID, or any Janus client), so the
facecast server sends one copy of the media however many watch.

With "to": "videoroom" the session publishes into a VideoRoom instead: a private room (H.264 + Opus; Janus
picks its id, or `room` names it) and in it a "remote publisher" fed by the same RTP output, both streams
to one port with the SSRCs Janus demultiplexes by (server/janus.py), its `rtcp_port` bringing the PLIs
back alike. Viewers subscribe to its feed (the view page with ?janus=URL&room=ID&feed=ID), beside
whoever else is in the room. The two targets differ only in StreamingTarget / VideoRoomTarget below.

A broadcast holds a long poll on its Janus session (which also keeps it alive, with a keepalive every
KEEPALIVE_S). When Janus goes away the poll fails at once: the broadcast ends as `failed`, an `output`
event (kind "janus", state "failed", one sentence) goes to the session's listeners, and the session and
its direct WebRTC viewers go on. Stopping it, or ending the session, destroys the mountpoint (or removes
the publisher and destroys the room).
Only the API token may start one: the server talks to the configured Janus on the caller's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web

from facecast.outputs.janus_rtp import JanusRtpOutput, RtpTarget
from facecast.server.errors import ApiError, parse_body
from facecast.server.janus import (
    STREAMING_PLUGIN,
    VIDEOROOM_PLUGIN,
    JanusClient,
    JanusError,
    Mountpoint,
    RemotePublisher,
)
from facecast.server.registry import LiveSession
from facecast.server.schemas import BroadcastAction
from facecast.server.state import REGISTRY
from facecast.stream.events import OutputChanged

log = logging.getLogger(__name__)

KEEPALIVE_S = 20.0  # Janus's session_timeout is 60 s by default
STOP_TIMEOUT_S = 3.0  # destroying the mountpoint and the Janus session, at most
RETRY_AFTER_FAILURE_S = 1.0  # an odd answer to a poll (not Janus gone) is retried after this


class Target(Protocol):
    """What a broadcast sends to in Janus: made by `create`, undone by `destroy`."""

    def rtp(self) -> RtpTarget: ...
    def describe(self, live: LiveSession, url: str) -> dict[str, Any]: ...
    async def destroy(self, janus: JanusClient) -> None: ...


class StreamingTarget:
    """A Streaming mountpoint: a port per medium; viewers `watch` it."""

    plugin = STREAMING_PLUGIN

    def __init__(self, mountpoint: Mountpoint, rtp_host: str) -> None:
        self.mountpoint = mountpoint
        self.rtp_host = rtp_host

    @classmethod
    async def create(
        cls, janus: JanusClient, live: LiveSession, rtp_host: str, target_id: int | None
    ) -> StreamingTarget:
        mountpoint = await janus.create_mountpoint(
            rtp_host=rtp_host, mountpoint_id=target_id, description=f"facecast session {live.id}"
        )
        return cls(mountpoint, rtp_host)

    def rtp(self) -> RtpTarget:
        mp = self.mountpoint
        return RtpTarget(self.rtp_host, mp.video_port, mp.audio_port, mp.video_rtcp_port)

    def describe(self, live: LiveSession, url: str) -> dict[str, Any]:
        mp = self.mountpoint.id
        view = f"/v1/sessions/{live.id}/view?" + urlencode(
            {"token": live.view_token, "janus": url, "mountpoint": mp}
        )
        return {
            "janus": url,
            "mountpoint": mp,
            "watch": {"janus": url, "mountpoint": mp, "plugin": self.plugin, "view": view},
            "rtp": {"host": self.rtp_host, "video_port": self.mountpoint.video_port,
                    "audio_port": self.mountpoint.audio_port, "video_rtcp_port": self.mountpoint.video_rtcp_port},
        }  # fmt: skip

    async def destroy(self, janus: JanusClient) -> None:
        await janus.destroy_mountpoint(self.mountpoint.id)


class VideoRoomTarget:
    """A remote publisher in a private VideoRoom room of its own: one port, streams told apart by SSRC;
    viewers subscribe to its feed."""

    plugin = VIDEOROOM_PLUGIN

    def __init__(self, publisher: RemotePublisher) -> None:
        self.publisher = publisher

    @classmethod
    async def create(
        cls, janus: JanusClient, live: LiveSession, rtp_host: str, target_id: int | None
    ) -> VideoRoomTarget:
        room = await janus.create_room(target_id, description=f"facecast session {live.id}")
        try:
            publisher = await janus.add_remote_publisher(
                room, rtp_host=rtp_host, display=f"facecast {live.id}"
            )
        except JanusError:
            with contextlib.suppress(JanusError):  # leave no empty room behind
                await janus.destroy_room(room)
            raise
        return cls(publisher)

    def rtp(self) -> RtpTarget:
        pub = self.publisher
        return RtpTarget(pub.host, pub.port, pub.port, pub.rtcp_port, pub.video_ssrc, pub.audio_ssrc)

    def describe(self, live: LiveSession, url: str) -> dict[str, Any]:
        pub = self.publisher
        # janus first, as in the documented link; the view token still rides along for the page's API calls
        view = f"/v1/sessions/{live.id}/view?" + urlencode(
            {"janus": url, "room": pub.room, "feed": pub.feed, "token": live.view_token}
        )
        return {
            "to": "videoroom",
            "janus": url,
            "room": pub.room,
            "feed": pub.feed,
            "watch": {"janus": url, "room": pub.room, "feed": pub.feed, "plugin": self.plugin, "view": view},
            "rtp": {"host": pub.host, "port": pub.port, "rtcp_port": pub.rtcp_port,
                    "audio_ssrc": pub.audio_ssrc, "video_ssrc": pub.video_ssrc},
        }  # fmt: skip

    async def destroy(self, janus: JanusClient) -> None:
        try:
            await janus.remove_remote_publisher(self.publisher)
        finally:  # the room goes even if the publisher went some other way
            await janus.destroy_room(self.publisher.room)


TARGETS: dict[str, type[StreamingTarget] | type[VideoRoomTarget]] = {
    "streaming": StreamingTarget,
    "videoroom": VideoRoomTarget,
}


class Broadcast:
    """One session's broadcast: its Janus session, target (mountpoint or room) and RTP output."""

    def __init__(self, live: LiveSession, janus: JanusClient, target: Target, output: JanusRtpOutput) -> None:
        self.live = live
        self.janus = janus
        self.target = target
        self.output = output
        self.state = "live"
        self.error: str | None = None
        self.started_at = time.time()
        self._watch = asyncio.ensure_future(self._watch_janus())

    @classmethod
    async def start(
        cls,
        live: LiveSession,
        url: str,
        rtp_host: str,
        api_secret: str | None,
        target_id: int | None,
        to: str = "streaming",
    ) -> Broadcast:
        """Creates the target and starts sending (JanusError: one sentence, nothing left behind)."""
        kind = TARGETS[to]
        janus = JanusClient(url, plugin=kind.plugin, api_secret=api_secret)
        try:
            await janus.open()
            target = await kind.create(janus, live, rtp_host, target_id)
        except BaseException:
            await janus.close()
            raise
        output = JanusRtpOutput(target.rtp())
        live.runtime.add_output(output)
        broadcast = cls(live, janus, target, output)
        broadcast._announce()
        return broadcast

    @property
    def active(self) -> bool:
        return self.state == "live"

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            **self.target.describe(self.live, self.janus.url),
            "output": self.output.stats(),
            **({"error": self.error} if self.error else {}),
        }

    async def stop(self) -> None:
        """Stops sending and destroys the target (Janus's answers awaited at most STOP_TIMEOUT_S)."""
        if not self.active:
            return
        self.state = "stopped"
        self._watch.cancel()
        self.live.runtime.remove_output(self.output)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                with contextlib.suppress(JanusError):
                    await self.target.destroy(self.janus)
        except TimeoutError:
            log.info("Janus did not confirm destroying the broadcast's %s in time", self.janus.plugin)
        finally:
            await self.janus.close()
        self._announce()

    async def _watch_janus(self) -> None:
        """Long polls Janus until it fails; then the broadcast ends as failed."""
        last_keepalive = time.monotonic()
        try:
            while True:
                await self.janus.events()
                if time.monotonic() - last_keepalive > KEEPALIVE_S:
                    await self.janus.keepalive()
                    last_keepalive = time.monotonic()
        except JanusError as exc:
            await self._fail(f"the broadcast through Janus ended: {exc}")

    async def _fail(self, reason: str) -> None:
        if not self.active:
            return
        self.state, self.error = "failed", reason
        log.warning("session %s: %s", self.live.id, reason)
        self.output.fail(reason)
        self.live.runtime.remove_output(self.output)
        self._announce()
        await self.janus.close()

    def _announce(self) -> None:
        if self.live.runtime.closed:
            return
        event = OutputChanged(
            output=self.output.id, kind=self.output.kind, state=self.state, message=self.error
        )
        self.live.runtime.events.publish(event.stamped(self.live.id, time.time()))


async def broadcast_action(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    body = await parse_body(request, BroadcastAction)
    current = live.broadcast
    if body.action == "stop":
        if current is None or not current.active:
            raise ApiError(409, "not_broadcasting", "this session is not broadcasting")
        await current.stop()
        return web.json_response(current.describe())
    if body.room is not None and body.to != "videoroom":
        raise ApiError(400, "bad_room", 'room: only for a broadcast to a VideoRoom ("to": "videoroom")')
    if body.mountpoint is not None and body.to != "streaming":
        raise ApiError(400, "bad_mountpoint", "mountpoint: only for a broadcast to a Streaming mountpoint")
    settings = registry.settings.server
    if not settings.janus_url:
        raise ApiError(409, "no_janus", "this server has no Janus configured (server.janus_url)")
    if live.runtime.failure is not None or live.runtime.closed:
        raise ApiError(409, "session_ended", "the session has ended; nothing to broadcast")
    if current is not None and current.active:
        raise ApiError(409, "already_broadcasting", "this session is already broadcasting through Janus")
    try:
        target_id = body.room if body.to == "videoroom" else body.mountpoint
        broadcast = await Broadcast.start(
            live, settings.janus_url, settings.janus_rtp_host, settings.janus_api_secret, target_id, body.to
        )
    except JanusError as exc:
        raise ApiError(502, "janus_failed", str(exc)) from None
    if live.runtime.closed or registry.sessions.get(live.id) is not live:  # the session ended meanwhile
        await broadcast.stop()
        raise ApiError(409, "session_ended", "the session ended while the broadcast started")
    live.broadcast = broadcast
    return web.json_response(
        broadcast.describe(), status=201, headers={"Location": f"/v1/sessions/{live.id}/broadcast"}
    )


async def broadcast_state(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    if live.broadcast is None:
        return web.json_response({"state": "none"})
    return web.json_response(live.broadcast.describe())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/sessions/{sid}/broadcast", broadcast_action)
    app.router.add_get("/v1/sessions/{sid}/broadcast", broadcast_state)
