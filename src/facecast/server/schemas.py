"""The API's bodies as typed models (pydantic): requests are validated at the edge with their limits,
and the OpenAPI document (facecast.server.openapi) is generated from the same models.

Request models forbid unknown fields: a misspelt field is an error the client sees, not a setting
silently ignored. Response models allow extra fields, so adding one is not a breaking change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facecast.server.tts import MAX_TEXT_CHARS, VOICE_RE

# Ids are hex digests or url-safe tokens; anything longer or odder is refused before it reaches a path.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_ID_CHARS = 64
MAX_SDP_BYTES = 64 * 1024  # an offer of a browser is 3-8 KB
MAX_NAME_CHARS = 200

AvatarId = Annotated[str, Field(pattern=ID_PATTERN, max_length=MAX_ID_CHARS, description="an avatar id")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests -------------------------------------------------------------------------------------
class SessionCreate(Request):
    avatar: AvatarId | None = Field(None, description="avatar id; default: the bundled portrait")
    engine: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,32}$",
        description="engine name (warp, aniportrait); default: the server's",
    )
    fps: Literal[25, 30] | None = Field(None, description="frame rate; default: the server's")
    background: str | None = Field(
        None,
        max_length=64,
        description="warp engine: keep, color:#RRGGBB, blur, image:<id> (POST /v1/backgrounds)"
        " or transparent (the video is 2:1, colour | alpha"
        " as grey; the view page with ?background=transparent shows it see-through); default: the server's"
        " (render.background)",
    )


class Offer(Request):
    type: Literal["offer"]
    sdp: str = Field(max_length=MAX_SDP_BYTES, description="the SDP offer")


class SayRequest(Request):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str | None = Field(None, pattern=VOICE_RE.pattern, description="espeak-ng voice")


class RecordingAction(Request):
    action: Literal["start", "stop"]


class BroadcastAction(Request):
    action: Literal["start", "stop"]
    to: Literal["streaming", "videoroom"] = Field(
        "streaming",
        description="start: a janus.plugin.streaming mountpoint, or a remote publisher in a new private"
        " janus.plugin.videoroom room",
    )
    mountpoint: int | None = Field(
        None,
        ge=1,
        le=2**53 - 1,
        description="start, to streaming: the Janus mountpoint id to create; default: Janus picks one",
    )
    room: int | None = Field(
        None,
        ge=1,
        le=2**53 - 1,
        description="start, to videoroom: the VideoRoom room id to create; default: Janus picks one",
    )


class PushCreate(Request):
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="where to push: rtmp://HOST[:PORT]/APP/KEY, rtmps://... or srt://HOST:PORT",
    )


class FaultRequest(Request):
    kind: Literal["engine"] = Field(description="test hook: the fault to inject")


# -- replies --------------------------------------------------------------------------------------
class ErrorDetail(Reply):
    code: str = Field(description="machine-readable error code")
    message: str = Field(description="one sentence for a person")


class ErrorBody(Reply):
    error: ErrorDetail


class Health(Reply):
    status: Literal["ok", "degraded"]
    sessions: int
    failed: int = Field(description="sessions that cannot continue")
    max_sessions: int


class Avatar(Reply):
    id: str
    name: str | None = None
    crop_scale: float | None = Field(None, description="frame pixels per photo pixel; above 1, upscaled")
    warning: str | None = Field(None, description="present when the frame is upscaled enough to look soft")


class AvatarList(Reply):
    avatars: list[Avatar]


class BackgroundImage(Reply):
    id: str
    width: int
    height: int
    bytes: int = Field(description="size of the stored PNG")
    created: float = Field(description="when it was stored (Unix time)")
    background: str = Field(description="the session background that shows it: image:<id>")
    links: dict[str, str]


class BackgroundList(Reply):
    backgrounds: list[BackgroundImage]


class IceServer(Reply):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(Reply):
    ice_servers: list[IceServer]


class Peer(Reply):
    id: str
    kind: Literal["webrtc", "whep", "whip"]
    state: str
    output: dict[str, Any] | None = None


class Session(Reply):
    id: str
    avatar: str
    engine: str
    fps: int
    size: int
    state: Literal["live", "failed", "closed"]
    failure: str | None = None
    frames: int
    frames_rendered: int
    frames_skipped: int
    queued_speech_s: float
    viewers: int
    peers: list[Peer]
    recording: Literal["none", "recording", "ready"]


class SessionCreated(Session):
    token: str = Field(description="drives the session: WebSocket, WHIP, events (Authorization: Bearer)")
    view_token: str = Field(description="watch only: WHEP and the view page, for links that get shared")
    ice_servers: list[IceServer]
    links: dict[str, str]


class SessionList(Reply):
    sessions: list[Session]


class Answer(Reply):
    type: Literal["answer"]
    sdp: str
    peer: str


class Accepted(Reply):
    utterance: int
    duration: float = Field(description="seconds of speech queued")


class Interrupted(Reply):
    generation: int


class RecordingState(Reply):
    state: Literal["recording", "ready"]
    frames: int | None = None
    duration: float | None = None
    bytes: int | None = None
    url: str | None = None


class PushInfo(Reply):
    id: str
    kind: Literal["push"]
    url: str = Field(description="the URL without its stream key")
    state: Literal["connecting", "live", "reconnecting", "stopped", "failed"]
    bitrate_kbps: float
    reconnects: int
    frames_sent: int
    frames_dropped: int
    error: str | None = None


class BroadcastWatch(Reply):
    janus: str = Field(description="Janus's HTTP API URL")
    mountpoint: int | None = Field(None, description="the janus.plugin.streaming mountpoint to watch")
    room: int | None = Field(None, description="the janus.plugin.videoroom room to join as a subscriber")
    feed: int | None = Field(None, description="the publisher (feed) in `room` to subscribe to")
    plugin: str
    view: str = Field(description="this server's view page playing it through Janus")


class BroadcastState(Reply):
    state: Literal["none", "live", "stopped", "failed"]
    to: Literal["videoroom"] | None = Field(None, description="set for a VideoRoom broadcast")
    janus: str | None = None
    mountpoint: int | None = None
    room: int | None = None
    feed: int | None = None
    watch: BroadcastWatch | None = None
    error: str | None = Field(None, description="why it failed (one sentence)")


class PushList(Reply):
    outputs: list[PushInfo]


class FaultInjected(Reply):
    injected: str
