"""The server's live state: avatar store, sessions, their peer connections and recordings."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
from aiortc import RTCPeerConnection

from facecast.config import Settings
from facecast.engine import Engine, EngineError, create_engine
from facecast.outputs.push import PushOutput
from facecast.outputs.recorder import Recorder
from facecast.outputs.webrtc import WebRtcOutput
from facecast.server.admission import RETRY_AFTER_S, default_max_sessions, overloaded
from facecast.server.errors import ApiError, not_found
from facecast.stream.session import SessionRuntime

if TYPE_CHECKING:
    from facecast.server.api_broadcast import Broadcast

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Peer:
    """One WebRTC peer of a session: a viewer (WHEP / offer: its output) and/or an audio publisher (WHIP / mic)."""

    pc: RTCPeerConnection
    kind: str  # "webrtc" | "whep" | "whip"
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    output: WebRtcOutput | None = None
    ingest: asyncio.Task[None] | None = None
    # Hash of the credential that created the peer (auth.token_fingerprint): only it, or the API token,
    # may delete the peer. None where the server has no API token (no credentials at all).
    owner: str | None = None
    # Closes the peer if it has not connected within server.offer_timeout_s of its answer.
    offer_timer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class LiveSession:
    runtime: SessionRuntime
    avatar_id: str
    engine: str
    peers: dict[str, Peer] = field(default_factory=dict)
    recorder: Recorder | None = None
    recording_path: Path | None = None
    pushes: dict[str, PushOutput] = field(default_factory=dict)  # RTMP/SRT outputs by id (api_outputs)
    broadcast: Broadcast | None = None  # through Janus (api_broadcast)
    # Watch-only credential for shareable view links (OBS): WHEP and the view page, nothing else.
    view_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def id(self) -> str:
        return self.runtime.id

    def describe(self) -> dict[str, Any]:
        info = self.runtime.describe()
        info.update(
            avatar=self.avatar_id,
            viewers=sum(p.output is not None for p in self.peers.values()),
            engine=self.engine,
            peers=[
                {"id": p.id, "kind": p.kind, "state": p.pc.connectionState}
                | ({"output": p.output.stats()} if p.output is not None else {})
                for p in self.peers.values()
            ],
            recording="recording" if self.recorder else ("ready" if self.recording_path else "none"),
            outputs=[p.stats() for p in self.pushes.values()],
        )
        return info


class Registry:
    def __init__(self, settings: Settings) -> None:
        from facecast.models.avatar import AvatarStore

        self.settings = settings
        # Every session renders and encodes in its own thread already; cv2's pool (a thread per core) on
        # top of them only spins and waits: 6 sessions on 2 cores rendered 17-22 fps with it, 28 without.
        cv2.setNumThreads(1)
        self.avatars = AvatarStore(settings.avatar_dir)
        self.sessions: dict[str, LiveSession] = {}
        self.frames_sent_total = 0
        self._preparing = 0

    def get(self, sid: str) -> LiveSession:
        try:
            return self.sessions[sid]
        except KeyError:
            raise not_found("session", sid) from None

    def session_tokens(self, sid: str) -> tuple[str, str] | None:
        """The session's own token and its view token (auth), or None for no such session."""
        live = self.sessions.get(sid)
        return (live.runtime.token, live.view_token) if live else None

    @property
    def max_sessions(self) -> int:
        """The configured session limit, else the one this machine's cores allow (server/admission.py)."""
        configured = self.settings.server.max_sessions
        render = self.settings.render
        return configured if configured is not None else default_max_sessions(render.size, render.fps)

    def admit(self) -> None:
        """429 with Retry-After when another session would overload the server."""
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if len(self.sessions) + self._preparing >= self.max_sessions:
            raise ApiError(429, "too_many_sessions", f"at most {self.max_sessions} sessions at once", retry)
        lateness = (live.runtime.latencies_s["emit_lateness"] for live in self.sessions.values())
        if self.settings.server.refuse_when_late and overloaded(lateness, self.settings.render.fps):
            raise ApiError(
                429, "server_busy", "the running sessions already use this server's capacity", retry
            )

    async def create(
        self,
        avatar_ref: str | None,
        engine: str,
        fps: int,
        background: str | None = None,
        identity: tuple[str, str, str] | None = None,
    ) -> LiveSession:
        """identity: (id, token, view_token) given by the caller (api_sessions.session_identity)."""
        if identity is not None and identity[0] in self.sessions:
            raise ApiError(409, "session_exists", f"a session '{identity[0]}' exists already")
        self.admit()
        loop = asyncio.get_running_loop()

        def prepare() -> tuple[Any, Engine]:
            if avatar_ref:
                try:
                    avatar = self.avatars.get(avatar_ref)
                except KeyError:
                    raise not_found("avatar", avatar_ref) from None
            else:
                avatar = self.avatars.default()
            try:
                render = self.settings.render
                if background is not None:
                    render = dataclasses.replace(render, background=background)
                return avatar, create_engine(engine, avatar, fps, render)
            except EngineError as exc:
                raise ApiError(400, exc.code, str(exc)) from None

        self._preparing += 1  # admitted sessions still loading count against the limit
        try:
            avatar, made = await loop.run_in_executor(None, prepare)
        finally:
            self._preparing -= 1
        runtime = SessionRuntime(
            made, session_id=identity[0] if identity else None, info={"avatar": avatar.id, "engine": engine}
        )
        live = LiveSession(runtime=runtime, avatar_id=avatar.id, engine=engine)
        if identity is not None:
            runtime.token, live.view_token = identity[1], identity[2]
        self.sessions[runtime.id] = live
        runtime.start()
        return live

    async def close_peer(self, live: LiveSession, peer: Peer) -> None:
        live.peers.pop(peer.id, None)
        if peer.output is not None:
            self.frames_sent_total += peer.output.video.sent if peer.output.video is not None else 0
            live.runtime.remove_output(peer.output)
        if peer.ingest is not None:
            peer.ingest.cancel()
        if peer.offer_timer is not None and peer.offer_timer is not asyncio.current_task():
            peer.offer_timer.cancel()  # not when the timer itself closes the peer: it would stop mid-close
        # The timer task's coroutine holds the peer: a reference cycle that would keep the peer's frame
        # queues (hundreds of MB of images per viewer) alive until Python's cyclic GC got round to them.
        peer.offer_timer = None
        try:
            await peer.pc.close()
        except (
            Exception
        ) as exc:  # aiortc trips over a peer a mangled offer left half built (found by fuzzing)
            log.info("closing a half-negotiated peer failed: %r", exc)

    async def delete(self, sid: str) -> None:
        live = self.get(sid)
        del self.sessions[sid]
        for peer in list(live.peers.values()):
            await self.close_peer(live, peer)
        if live.broadcast is not None:
            await live.broadcast.stop()  # destroys its Janus mountpoint or room too
        if live.recorder is not None:
            recorder, live.recorder = live.recorder, None
            live.runtime.remove_output(recorder)
            await asyncio.get_running_loop().run_in_executor(None, recorder.finish)
        await live.runtime.close()

    async def close_all(self) -> None:
        for sid in list(self.sessions):
            await self.delete(sid)
