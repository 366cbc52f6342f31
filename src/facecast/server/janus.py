"""A small typed client of Janus's HTTP REST API (the Streaming and VideoRoom parts facecast needs).

    client = JanusClient("http://127.0.0.1:8088/janus")
    await client.open()                  # a Janus session, with a handle attached to janus.plugin.streaming
    mp = await client.create_mountpoint(rtp_host="127.0.0.1")   # an RTP mountpoint: H.264 + Opus
    ... RTP to mp.video_port / mp.audio_port on rtp_host ...
    await client.events()                # long poll: returns Janus's events (at the latest after ~30 s)
    await client.destroy_mountpoint(mp.id); await client.close()

    client = JanusClient(url, plugin=VIDEOROOM_PLUGIN)   # the same, publishing into a VideoRoom room
    room = await client.create_room(); pub = await client.add_remote_publisher(room, rtp_host="127.0.0.1")
    ... RTP to pub.host:pub.port, SSRCs pub.audio_ssrc and pub.video_ssrc ...
    await client.remove_remote_publisher(pub); await client.destroy_room(room)

A Janus session lives as long as requests keep coming (Janus's session_timeout, 60 s by default): the
owner long-polls `events()` (each poll is activity) and sends `keepalive()` now and then.
Every failure raises JanusError with one sentence: Janus unreachable, Janus refusing a request (its
error code and reason), or an answer that is not Janus's.
See the plugins' APIs in janus-gateway's src/plugins/janus_streaming.c and janus_videoroom.c (Janus 1.1).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from facecast.outputs.janus_rtp import AUDIO_PT, H264_FMTP, H264_PROFILE, VIDEO_PT

STREAMING_PLUGIN = "janus.plugin.streaming"
VIDEOROOM_PLUGIN = "janus.plugin.videoroom"
REQUEST_TIMEOUT_S = 5.0
LONG_POLL_S = 30  # Janus answers a long poll with a keepalive after 30 s when nothing happened
# A VideoRoom remote publisher takes all its streams on one port and finds each packet's stream by its
# SSRC: BASE + mindex * STEP (janus_videoroom.c, REMOTE_PUBLISHER_BASE_SSRC / _SSRC_STEP; the same in
# 1.1.2 and later, which add an offset of their own after demultiplexing). facecast's publisher has the
# audio at mindex 0 and the video at mindex 1.
REMOTE_PUBLISHER_BASE_SSRC = 1000
REMOTE_PUBLISHER_SSRC_STEP = 10
AUDIO_MINDEX, VIDEO_MINDEX = 0, 1


class JanusError(Exception):
    """One sentence for a person: what Janus (or the way to it) did wrong."""


@dataclass(frozen=True)
class Mountpoint:
    id: int
    video_port: int
    audio_port: int
    host: str | None  # the address Janus bound, when it says
    video_rtcp_port: int | None = None  # where Janus takes the video's RTCP and answers with PLIs


@dataclass(frozen=True)
class RemotePublisher:
    """A VideoRoom publisher fed by RTP: viewers subscribe to `feed` in `room`."""

    room: int
    feed: int
    host: str  # where to send the RTP: all streams to one port, demultiplexed by SSRC
    port: int
    rtcp_port: int  # where Janus takes RTCP to latch onto, and sends its PLIs from

    @property
    def audio_ssrc(self) -> int:
        return REMOTE_PUBLISHER_BASE_SSRC + AUDIO_MINDEX * REMOTE_PUBLISHER_SSRC_STEP

    @property
    def video_ssrc(self) -> int:
        return REMOTE_PUBLISHER_BASE_SSRC + VIDEO_MINDEX * REMOTE_PUBLISHER_SSRC_STEP


class JanusClient:
    """One Janus session with one handle on a plugin (Streaming by default), over the HTTP REST API."""

    def __init__(
        self,
        url: str,
        *,
        plugin: str = STREAMING_PLUGIN,
        api_secret: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.plugin = plugin
        self.api_secret = api_secret
        self.timeout_s = timeout_s
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self._http = http
        self._own_http = http is None

    async def open(self) -> None:
        """Creates the Janus session and attaches the plugin."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        created = await self._post(self.url, {"janus": "create"})
        self.session_id = int(created["data"]["id"])
        attached = await self._post(self._session_url, {"janus": "attach", "plugin": self.plugin})
        self.handle_id = int(attached["data"]["id"])

    async def close(self) -> None:
        """Ends the Janus session (best effort: Janus may be gone) and the HTTP client."""
        try:
            if self.session_id is not None and self._http is not None and not self._http.closed:
                await self._post(self._session_url, {"janus": "destroy"}, timeout_s=2.0)
        except JanusError:
            pass
        finally:
            self.session_id = self.handle_id = None
            if self._own_http and self._http is not None:
                await self._http.close()

    # -- the Streaming plugin ---------------------------------------------------------------------
    async def create_mountpoint(
        self,
        *,
        rtp_host: str,
        mountpoint_id: int | None = None,
        description: str = "facecast",
        video_port: int = 0,
        audio_port: int = 0,
        video_rtcp_port: int | None = 0,
    ) -> Mountpoint:
        """An RTP mountpoint receiving H.264 (pt 96) and Opus (pt 111) on `rtp_host` (ports 0: Janus picks).

        The video also gets an RTCP port (`rtcpport`; None: none): Janus sends its keyframe requests (PLI,
        when a viewer starts watching or asks for one, at most one a second) from there to the address
        it last received RTP or RTCP from on that port, so the sender must send some there first."""
        body: dict[str, Any] = {
            "request": "create",
            "type": "rtp",
            "description": description,
            "is_private": True,  # not listed: viewers are given its id
            "media": [
                {"type": "video", "mid": "v", "port": video_port, "pt": VIDEO_PT, "codec": "h264",
                 "fmtp": H264_FMTP, "iface": rtp_host},
                {"type": "audio", "mid": "a", "port": audio_port, "pt": AUDIO_PT, "codec": "opus",
                 "fmtp": "minptime=10;useinbandfec=1", "iface": rtp_host},
            ],
        }  # fmt: skip
        if video_rtcp_port is not None:
            body["media"][0]["rtcpport"] = video_rtcp_port
        if mountpoint_id is not None:
            body["id"] = mountpoint_id
        data = await self.message(body, what="the mountpoint")
        try:
            stream = data["stream"]
            ports = {p["type"]: int(p["port"]) for p in stream["ports"]}
            rtcp = {p["type"]: int(p["rtcp_port"]) for p in stream["ports"] if "rtcp_port" in p}
            return Mountpoint(
                int(stream["id"]), ports["video"], ports["audio"], stream.get("host"), rtcp.get("video")
            )
        except (KeyError, TypeError, ValueError):
            raise JanusError(f"Janus answered the mountpoint request oddly: {_clip(data)}") from None

    async def destroy_mountpoint(self, mountpoint_id: int) -> None:
        await self.message({"request": "destroy", "id": mountpoint_id}, what="destroying the mountpoint")

    # -- the VideoRoom plugin (plugin=VIDEOROOM_PLUGIN) --------------------------------------------
    async def create_room(self, room_id: int | None = None, *, description: str = "facecast") -> int:
        """A private room (not listed) for one H.264 + Opus publisher; Janus picks its id unless given."""
        body: dict[str, Any] = {
            "request": "create", "description": description, "is_private": True, "publishers": 1,
            "videocodec": "h264", "audiocodec": "opus", "h264_profile": H264_PROFILE,
        }  # fmt: skip
        if room_id is not None:
            body["room"] = room_id
        data = await self.message(body, what="the room")
        return _int_field(data, "room", "the room request")

    async def destroy_room(self, room_id: int) -> None:
        await self.message({"request": "destroy", "room": room_id}, what="destroying the room")

    async def add_remote_publisher(
        self, room_id: int, *, rtp_host: str, display: str = "facecast"
    ) -> RemotePublisher:
        """A publisher fed by plain RTP: Opus (mindex 0) and H.264 (mindex 1), both to one port on
        `rtp_host`, told apart by SSRC (RemotePublisher.audio_ssrc, video_ssrc); Janus binds that port and the RTCP one
        (PLIs go to whoever sent RTP or RTCP there last) on `rtp_host` only."""
        streams = [
            {"type": "audio", "mindex": AUDIO_MINDEX, "mid": str(AUDIO_MINDEX), "codec": "opus", "fec": True},
            # No h264_profile here: Janus 1.1.2 validates it as a boolean; the room's applies instead.
            {"type": "video", "mindex": VIDEO_MINDEX, "mid": str(VIDEO_MINDEX), "codec": "h264"},
        ]
        body = {"request": "add_remote_publisher", "room": room_id, "display": display, "iface": rtp_host,
                "streams": streams}  # fmt: skip
        data = await self.message(body, what="the remote publisher")
        what = "the remote publisher request"
        return RemotePublisher(
            room=room_id,
            feed=_int_field(data, "id", what),
            host=str(data.get("ip") or rtp_host),
            port=_int_field(data, "port", what),
            rtcp_port=_int_field(data, "rtcp_port", what),
        )

    async def remove_remote_publisher(self, publisher: RemotePublisher) -> None:
        body = {"request": "remove_remote_publisher", "room": publisher.room, "id": publisher.feed}
        await self.message(body, what="removing the remote publisher")

    async def message(
        self, body: dict[str, Any], *, jsep: dict[str, Any] | None = None, what: str = "the request"
    ) -> dict[str, Any]:
        """A request to the plugin; returns its synchronous answer (plugindata.data) or {} for an ack
        (asynchronous requests such as watch and start answer later, as events)."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self._post(f"{self._session_url}/{self.handle_id}", msg)
        if reply.get("janus") == "ack":
            return {}
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data or "error" in data:
            raise JanusError(
                f"Janus refused {what} (error {data.get('error_code', '?')}: {data.get('error', 'no reason')})"
            )
        return dict(data)

    # -- the session ------------------------------------------------------------------------------
    async def keepalive(self) -> None:
        await self._post(self._session_url, {"janus": "keepalive"})

    async def events(self, max_events: int = 10) -> list[dict[str, Any]]:
        """Long poll: Janus's next events for this session (a keepalive one after ~LONG_POLL_S of quiet)."""
        assert self._http is not None
        params = {"maxev": str(max_events), "rid": str(secrets.randbits(32))}
        if self.api_secret:
            params["apisecret"] = self.api_secret
        reply = await self._request("GET", self._session_url, None, LONG_POLL_S + self.timeout_s, params)
        events = reply if isinstance(reply, list) else [reply]
        for event in events:
            if isinstance(event, dict) and event.get("janus") == "error":
                raise self._refused(event, "the event poll")
        return [e for e in events if isinstance(e, dict)]

    @property
    def _session_url(self) -> str:
        if self.session_id is None:
            raise JanusError("the Janus session is not open")
        return f"{self.url}/{self.session_id}"

    async def _post(self, url: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(8)}
        if self.api_secret:
            body["apisecret"] = self.api_secret
        reply = await self._request("POST", url, body, timeout_s or self.timeout_s, None)
        if not isinstance(reply, dict):
            raise JanusError(f"Janus at {self.url} answered with something other than a JSON object")
        if reply.get("janus") == "error":
            raise self._refused(reply, f"the '{body['janus']}' request")
        return reply

    async def _request(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        timeout_s: float,
        params: dict[str, str] | None,
    ) -> Any:
        assert self._http is not None, "open() first"
        try:
            async with self._http.request(
                method, url, json=body, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise JanusError(
                        f"Janus at {self.url} answered HTTP {resp.status} ({_clip(text)}); is that its API URL?"
                    )
        except TimeoutError:  # before OSError, of which it is one
            raise JanusError(f"Janus at {self.url} did not answer within {timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise JanusError(f"Janus at {self.url} is unreachable ({_reason(exc)})") from None
        try:
            return json.loads(text)
        except ValueError:
            raise JanusError(
                f"Janus at {self.url} answered with something other than JSON ({_clip(text)})"
            ) from None

    def _refused(self, reply: dict[str, Any], what: str) -> JanusError:
        error = reply.get("error") or {}
        return JanusError(
            f"Janus refused {what} (error {error.get('code', '?')}: {error.get('reason', 'no reason')})"
        )


def _int_field(data: dict[str, Any], key: str, what: str) -> int:
    try:
        return int(data[key])
    except (KeyError, TypeError, ValueError):
        raise JanusError(f"Janus answered {what} oddly: {_clip(data)}") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return _clip(text) if text else type(exc).__name__


def _clip(value: object, chars: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"
