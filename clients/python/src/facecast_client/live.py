"""LiveAvatar: one facecast session driven by pushed speech, with its frames coming out — the core that
the Pipecat service and the LiveKit video generator share.

Frames come from the frames WebSocket, each image with exactly its audio, at the session's pace (idle
frames when nothing is said). An interrupt is sent at once; frames of the old generation still in
flight are passed on silenced (their images, so the frame rate never stutters, without their speech),
so no interrupted speech leaves after the interrupt whatever the network's delay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facecast_client.api import FacecastClient, SessionInfo
from facecast_client.errors import SessionEnded
from facecast_client.frames import Frame
from facecast_client.streams import FrameStream, SpeechStream

EVENT_BACKLOG = 64


class LiveAvatar:
    """A session of `avatar` (an avatar id, a photo's path, or None for the server's default).

    `client` is used, not owned. `session_id` attaches to an existing session instead of creating one.
    The latest events (speaking_started, ..., error) are in `events` as they arrive.
    """

    def __init__(
        self,
        client: FacecastClient,
        avatar: str | Path | None = None,
        *,
        fps: int | None = None,
        background: str | None = None,
        image: Literal["jpeg", "rgb24"] | None = None,
        session_id: str | None = None,
    ) -> None:
        self.client = client
        self.avatar = avatar
        self.fps = fps
        self.background = background  # keep, color:#RRGGBB, blur, image:<upload id>; None: the server's
        self.image = image or ("rgb24" if client.is_local else "jpeg")  # no encoding on one machine
        self.session_id = session_id
        self.info: SessionInfo | None = None
        # The latest events (the socket is read throughout; kept bounded for a session that runs for days).
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_BACKLOG)
        self._speech: SpeechStream | None = None
        self._frames: FrameStream | None = None
        self._event_task: asyncio.Task[None] | None = None
        self._owns_session = session_id is None
        self._last_generation = -1
        self._silenced_through = -1  # frames of generations up to this one carry no speech

    async def start(self) -> SessionInfo:
        avatar_id = await self.client.resolve_avatar(self.avatar)
        if self.session_id is None:
            self.info = await self.client.create_session(
                avatar=avatar_id, fps=self.fps, background=self.background
            )
            self.session_id = self.info["id"]
        else:
            self.info = await self.client.get_session(self.session_id)
        self._speech = await self.client.speech(self.session_id)
        self._frames = await self.client.frames(self.session_id, image=self.image)
        self._event_task = asyncio.ensure_future(self._read_events())
        return self.info

    async def _read_events(self) -> None:
        assert self._speech is not None
        try:
            async for event in self._speech.events():
                self.events.append(event)
        except SessionEnded as exc:
            self.events.append({"type": "error", "code": exc.code, "message": exc.message})

    async def push(self, pcm: bytes | np.ndarray, sample_rate: int, channels: int = 1) -> None:
        """Speech as it arrives (any rate and channel count)."""
        assert self._speech is not None, "start() first"
        await self._speech.send(pcm, sample_rate, channels)

    async def end_utterance(self) -> None:
        assert self._speech is not None, "start() first"
        await self._speech.end()

    async def interrupt(self) -> None:
        """Stop speaking now: queued speech is dropped at the server's next frame, and frames already on
        their way are passed on silenced."""
        assert self._speech is not None, "start() first"
        self._silenced_through = self._last_generation
        await self._speech.interrupt()

    async def frames(self) -> AsyncIterator[Frame]:
        """The session's frames until close(); raises SessionEnded if the server ends them."""
        assert self._frames is not None, "start() first"
        async for frame in self._frames:
            self._last_generation = max(self._last_generation, frame.generation)
            if frame.generation <= self._silenced_through and frame.speech:
                frame = replace(frame, speech=False, ends_utterance=False, audio=np.zeros_like(frame.audio))
            yield frame

    async def close(self) -> None:
        """Close the sockets and, when this created the session, delete it (a server already gone is fine)."""
        if self._event_task is not None:
            self._event_task.cancel()
        for stream in (self._frames, self._speech):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()
        if self._owns_session and self.session_id is not None:
            with contextlib.suppress(Exception):
                await self.client.delete_session(self.session_id)
        self._frames = self._speech = None
