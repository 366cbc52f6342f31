"""One live session: its speech queue, engine worker, viewers and events.

The worker thread hands each finished frame to the event loop (call_soon_threadsafe); the loop
fans it out to every sink (viewer tracks, recorder) and publishes events. Nothing here blocks
the loop, and nothing a sink does can slow the worker.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from facecast.stream.clock import FrameClock
from facecast.stream.engine_runner import EngineRunner, OutputFrame, TalkingEngine
from facecast.stream.fanout import EventHub, Subscriber
from facecast.stream.speech_queue import SpeechQueue, Utterance
from facecast.stream.video_encoder import SharedVideoEncoder

log = logging.getLogger(__name__)

Sink = Callable[[OutputFrame], None]


class SessionRuntime:
    def __init__(
        self,
        engine: TalkingEngine,
        *,
        session_id: str | None = None,
        clock: FrameClock | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.id = session_id or secrets.token_hex(8)
        self.token = secrets.token_urlsafe(18)  # per-session credential for WebSocket / WHIP / WHEP
        self.info = dict(info or {})
        self.created_at = time.time()
        self.fps = engine.fps
        self.size = engine.size
        self.lookahead_frames = engine.lookahead_frames
        self.loop = loop or asyncio.get_running_loop()
        self.queue = SpeechQueue()
        self.events = EventHub()
        self.clock = clock or FrameClock(engine.fps)
        self._sinks: set[Sink] = set()
        self._encoders: dict[str, SharedVideoEncoder] = {}  # codec -> encoder, shared by its viewers
        self.frames_emitted = 0
        self.frames_skipped = 0  # emitted repeating the previous image (worker overloaded), not rendered
        self.last_frame: OutputFrame | None = None
        self.latencies_s: dict[str, deque[float]] = {
            "render": deque(maxlen=600),
            "emit_lateness": deque(maxlen=600),
        }
        self.closed = False
        self.runner = EngineRunner(
            engine,
            self.queue,
            self.clock,
            self._from_worker_frame,
            self._from_worker_event,
            name=f"engine-{self.id}",
        )

    def start(self) -> None:
        self.runner.start()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.get_running_loop().run_in_executor(None, self.runner.stop)
        engine_close = getattr(self.runner.engine, "close", None)
        if callable(engine_close):  # e.g. releases the session's stream on a shared GPU renderer
            engine_close()
        self.events.close()
        for sink in list(self._sinks):
            closer = getattr(sink, "close", None)
            if callable(closer):
                closer()
        self._sinks.clear()

    # -- speech in ---------------------------------------------------------------------------
    def begin_utterance(self, source: str) -> Utterance:
        return self.queue.begin(source)

    def say(self, audio: np.ndarray, source: str) -> Utterance:
        return self.queue.say(source, audio)

    def push_live(self, audio: np.ndarray) -> None:
        self.queue.push_live(audio)

    def interrupt(self) -> int:
        """Takes effect on the next frame out; returns the new generation."""
        return self.queue.interrupt()

    @property
    def generation(self) -> int:
        return self.queue.generation

    # -- frames out --------------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        self._sinks.add(sink)

    def remove_sink(self, sink: Sink) -> None:
        self._sinks.discard(sink)

    def subscribe(self, maxlen: int | None) -> Subscriber[OutputFrame]:
        sub: Subscriber[OutputFrame] = Subscriber(maxlen)
        self.add_sink(sub.put)
        return sub

    def unsubscribe(self, sub: Subscriber[OutputFrame]) -> None:
        self.remove_sink(sub.put)
        sub.close()

    # -- shared video encoding ----------------------------------------------------------------
    def acquire_encoder(self, codec: str) -> SharedVideoEncoder:
        """The session's `codec` encoder (made on first use); each acquire needs one release."""
        enc = self._encoders.get(codec)
        if enc is None:
            enc = self._encoders[codec] = SharedVideoEncoder(codec, self.size, self.fps)
        enc.users += 1
        return enc

    @property
    def encoders(self) -> dict[str, SharedVideoEncoder]:
        return self._encoders

    def release_encoder(self, enc: SharedVideoEncoder) -> None:
        enc.users -= 1
        if enc.users <= 0 and self._encoders.get(enc.codec) is enc:
            del self._encoders[enc.codec]

    def _from_worker_frame(self, out: OutputFrame) -> None:
        # Worker thread: encode once here for all viewers of each codec, off the event loop.
        for enc in list(self._encoders.values()):
            t0 = time.perf_counter()
            try:
                out.packets[enc.codec] = enc.encode(out)
            except Exception:  # its viewers get no video; the session (and its audio) goes on
                if enc.failures == 0:
                    log.exception("%s encoder failed", enc.codec)
                enc.failures += 1
            out.encode_s += time.perf_counter() - t0
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._dispatch, out)

    def _from_worker_event(self, event: dict[str, Any]) -> None:
        event = {**event, "session": self.id, "time": round(time.time(), 3)}
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.publish, event)

    def _dispatch(self, out: OutputFrame) -> None:
        self.frames_emitted += 1
        self.frames_skipped += not out.rendered
        self.last_frame = out
        if out.rendered:
            self.latencies_s["render"].append(out.render_s)
        self.latencies_s["emit_lateness"].append((time.monotonic_ns() - out.due_ns) / 1e9)
        for sink in list(self._sinks):
            try:
                sink(out)
            except Exception:  # a broken sink is removed; the session goes on
                log.exception("frame sink failed; removing it")
                self._sinks.discard(sink)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.info,
            "fps": self.fps,
            "size": self.size,
            "created_at": round(self.created_at, 3),
            "frames": self.frames_emitted,
            "frames_rendered": self.frames_emitted - self.frames_skipped,
            "frames_skipped": self.frames_skipped,
            "queued_speech_s": round(self.queue.queued_seconds(), 3),
            "state": "failed" if self.runner.failed else ("closed" if self.closed else "live"),
        }
