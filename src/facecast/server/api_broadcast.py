"""/v1/sessions/{id}/broadcast: a session fanned out to any number of viewers through Janus.

    POST {"action": "start"}   201 {"state": "live", "janus": URL, "mountpoint": ID, "watch": {...}}
    POST {"action": "stop"}    200 {"state": "stopped", ...}
    GET                        200 {"state": "none" | "live" | "stopped" | "failed", ...}

Starting one opens a Janus session (server/janus.py), creates an RTP mountpoint on Janus's Streaming
plugin (H.264 + Opus; Janus picks its ports, or `mountpoint` names its id) and adds a JanusRtpOutput to
the session, which sends the session's already-encoded media there (outputs/janus_rtp.py); the video's
RTCP port brings Janus's keyframe requests (a PLI when a viewer starts watching) back to the session's
encoder, so a viewer joining mid-stream need not wait for the next periodic keyframe. Viewers watch
the mountpoint through Janus (the view page with ?janus=URL&mountpoint=ID, or any Janus client), so the
facecast server sends one copy of the media however many watch.

A broadcast holds a long poll on its Janus session (which also keeps it alive, with a keepalive every
KEEPALIVE_S). When Janus goes away the poll fails at once: the broadcast ends as `failed`, an `output`
event (kind "janus", state "failed", one sentence) goes to the session's listeners, and the session and
its direct WebRTC viewers go on. Stopping it, or ending the session, destroys the mountpoint.
Only the API token may start one: the server talks to the configured Janus on the caller's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from facecast.outputs.janus_rtp import JanusRtpOutput, RtpTarget
from facecast.server.errors import ApiError, parse_body
from facecast.server.janus import JanusClient, JanusError, Mountpoint
from facecast.server.registry import LiveSession
from facecast.server.schemas import BroadcastAction
from facecast.server.state import REGISTRY
from facecast.stream.events import OutputChanged

log = logging.getLogger(__name__)

KEEPALIVE_S = 20.0  # Janus's session_timeout is 60 s by default
STOP_TIMEOUT_S = 3.0  # destroying the mountpoint and the Janus session, at most
RETRY_AFTER_FAILURE_S = 1.0  # an odd answer to a poll (not Janus gone) is retried after this


class Broadcast:
    """One session's broadcast: its Janus session, mountpoint and RTP output."""

    def __init__(
        self, live: LiveSession, janus: JanusClient, mountpoint: Mountpoint, output: JanusRtpOutput
    ) -> None:
        self.live = live
        self.janus = janus
        self.mountpoint = mountpoint
        self.output = output
        self.state = "live"
        self.error: str | None = None
        self.started_at = time.time()
        self._watch = asyncio.ensure_future(self._watch_janus())

    @classmethod
    async def start(
        cls, live: LiveSession, url: str, rtp_host: str, api_secret: str | None, mountpoint_id: int | None
    ) -> Broadcast:
        """Creates the mountpoint and starts sending (JanusError: one sentence, nothing left behind)."""
        janus = JanusClient(url, api_secret=api_secret)
        try:
            await janus.open()
            mountpoint = await janus.create_mountpoint(
                rtp_host=rtp_host, mountpoint_id=mountpoint_id, description=f"facecast session {live.id}"
            )
        except BaseException:
            await janus.close()
            raise
        target = RtpTarget(rtp_host, mountpoint.video_port, mountpoint.audio_port, mountpoint.video_rtcp_port)
        output = JanusRtpOutput(target)
        live.runtime.add_output(output)
        broadcast = cls(live, janus, mountpoint, output)
        broadcast._announce()
        return broadcast

    @property
    def active(self) -> bool:
        return self.state == "live"

    def describe(self) -> dict[str, Any]:
        url, mp = self.janus.url, self.mountpoint.id
        view = f"/v1/sessions/{self.live.id}/view?" + urlencode(
            {"token": self.live.view_token, "janus": url, "mountpoint": mp}
        )
        return {
            "state": self.state,
            "janus": url,
            "mountpoint": mp,
            "watch": {"janus": url, "mountpoint": mp, "plugin": "janus.plugin.streaming", "view": view},
            "rtp": {"host": self.output.target.host, "video_port": self.mountpoint.video_port,
                    "audio_port": self.mountpoint.audio_port, "video_rtcp_port": self.mountpoint.video_rtcp_port},
            "output": self.output.stats(),
            **({"error": self.error} if self.error else {}),
        }  # fmt: skip

    async def stop(self) -> None:
        """Stops sending and destroys the mountpoint (Janus's answer awaited at most STOP_TIMEOUT_S)."""
        if not self.active:
            return
        self.state = "stopped"
        self._watch.cancel()
        self.live.runtime.remove_output(self.output)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                with contextlib.suppress(JanusError):
                    await self.janus.destroy_mountpoint(self.mountpoint.id)
        except TimeoutError:
            log.info("Janus did not confirm destroying mountpoint %s in time", self.mountpoint.id)
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
    settings = registry.settings.server
    if not settings.janus_url:
        raise ApiError(409, "no_janus", "this server has no Janus configured (server.janus_url)")
    if live.runtime.failure is not None or live.runtime.closed:
        raise ApiError(409, "session_ended", "the session has ended; nothing to broadcast")
    if current is not None and current.active:
        raise ApiError(409, "already_broadcasting", "this session is already broadcasting through Janus")
    try:
        broadcast = await Broadcast.start(
            live, settings.janus_url, settings.janus_rtp_host, settings.janus_api_secret, body.mountpoint
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
