"""A session's two WebSockets, typed: speech in (PCM, end, interrupt; events back) and frames out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np

from facecast_client.errors import SessionEnded
from facecast_client.frames import Frame, FrameReader
from facecast_client.pcm import SERVER_RATE_HZ, PcmConverter

# The WebSocket subprotocols: "facecast", and "facecast.bearer.<token>" to authenticate without headers.
SUBPROTOCOL = "facecast"
BEARER_SUBPROTOCOL_PREFIX = "facecast.bearer."


def audio_subprotocols(token: str | None = None) -> tuple[str, ...]:
    """What a client offers on a session WebSocket: `facecast`, and `facecast.bearer.<token>` to authenticate
    without headers (a browser's WebSocket cannot set them; URLs must not carry tokens)."""
    return (SUBPROTOCOL,) if token is None else (SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + token)


def _ended(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, what: str) -> SessionEnded:
    if msg.type == aiohttp.WSMsgType.ERROR:
        return SessionEnded("server_gone", f"the {what} socket failed: {ws.exception()}")
    code = ws.close_code
    reason = msg.extra if isinstance(msg.extra, str) and msg.extra else "no reason given"
    if code in (None, 1006):  # no close frame: the connection dropped (a crash, the network)
        return SessionEnded("server_gone", "the server went away (the connection was lost)")
    if code == 1001:
        return SessionEnded("server_gone", f"the server went away ({reason})")
    return SessionEnded("session_ended", f"the server closed the {what} socket ({code}: {reason})")


class SpeechStream:
    """Speech into a session: PCM at any rate and channel count (converted here to s16le mono 16 kHz,
    so nothing a TTS produces is refused), utterance ends, interrupts; the session's events back."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._converter = PcmConverter(SERVER_RATE_HZ)
        self._started = False  # the server keeps our start's format until an interrupt
        self._closing = False

    async def send(
        self, pcm: bytes | np.ndarray, sample_rate: int = SERVER_RATE_HZ, channels: int = 1
    ) -> None:
        """Queue speech: s16le bytes, int16 or float samples (interleaved when several channels)."""
        samples = self._converter.convert(pcm, sample_rate, channels)
        await self._send_samples(samples)

    async def end(self) -> None:
        """The utterance is complete: it plays out, then `playback_finished` comes back."""
        await self._send_samples(self._converter.flush())
        await self.ws.send_json({"type": "end"})

    async def interrupt(self) -> None:
        """Stop speaking now: everything queued and in flight is dropped at the next frame."""
        self._converter.flush()
        await self.ws.send_json({"type": "interrupt"})
        self._started = False

    async def _send_samples(self, samples: np.ndarray) -> None:
        if not samples.size:
            return
        if not self._started:
            start = {"type": "start", "sample_rate": SERVER_RATE_HZ, "channels": 1, "format": "s16le"}
            await self.ws.send_json(start)
            self._started = True
        await self.ws.send_bytes(samples.astype("<i2", copy=False).tobytes())

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The session's events (speaking_started, speaking_stopped, playback_finished, error) until we close;
        raises SessionEnded when the server ends the socket."""
        while True:
            try:
                yield await self.next_event()
            except SessionEnded:
                if self._closing:
                    return
                raise

    async def next_event(self) -> dict[str, Any]:
        msg = await self.ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            event: dict[str, Any] = json.loads(msg.data)
            return event
        raise _ended(self.ws, msg, "audio")

    async def close(self) -> None:
        self._closing = True
        await self.ws.close()


class FrameStream:
    """Frames out of a session, each image with exactly its audio (s16 mono 16 kHz), at the session's pace."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._reader = FrameReader()
        self._closing = False

    async def next_frame(self) -> Frame:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                return self._reader.parse(msg.data)
            if msg.type != aiohttp.WSMsgType.TEXT:  # (no text is sent today; skipped for the future)
                raise _ended(self.ws, msg, "frames")

    async def __aiter__(self) -> AsyncIterator[Frame]:
        while True:
            try:
                yield await self.next_frame()
            except SessionEnded:
                if self._closing:
                    return
                raise

    async def close(self) -> None:
        self._closing = True
        await self.ws.close()
