"""One live session: its speech queue, interruption, engine worker, outputs and events.

The worker thread makes each frame, encodes it once per codec for every output (the session's
EncoderPool), and hands it to the event loop (call_soon_threadsafe); the loop fans it out to every
output (viewer tracks, recorder, ...) and publishes events. Nothing here blocks the loop, and nothing
an output does can slow the worker. The session is the outputs' host (facecast.outputs.base.OutputHost).

Failures stay inside the session, and each is an `error` event: an engine step that raises ends what was
playing and the session goes on (stream/engine_runner.py), an encoder that raises is rebuilt and its
viewers resume at a keyframe (outputs/video_encoder.py), an output whose on_frame raises is removed.
A session whose engine cannot go on is `failed` (`failure` says why, as does describe() and an
`engine_failed` event): its worker stops, so its viewers keep the last image and hear silence, and it
refuses speech (QueueClosedError) until it is closed. No other session is touched.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any, TypeVar

import numpy as np

from facecast.engine import Engine
from facecast.frames import OutputFrame
from facecast.outputs.base import Output
from facecast.outputs.video_encoder import EncoderPool
from facecast.stream.clock import FrameClock
from facecast.stream.engine_runner import EngineRunner, exception_reason
from facecast.stream.events import ErrorEvent, Event, EventHub
from facecast.stream.interruption import Interruption
from facecast.stream.speech_queue import SpeechQueue, Utterance

log = logging.getLogger(__name__)

OutputT = TypeVar("OutputT", bound=Output)


class SessionRuntime:
    def __init__(
        self,
        engine: Engine,
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
        self.interruption = Interruption()
        self.queue = SpeechQueue(self.interruption)
        self.events = EventHub()
        self.clock = clock or FrameClock(engine.fps)
        self.encoders = EncoderPool(self.size, self.fps)  # one encode per frame and codec, for all outputs
        self._outputs: set[Output] = set()
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
        self.runner.engine.close()
        self.events.close()
        for output in list(self._outputs):
            self.remove_output(output)

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

    # -- failures ----------------------------------------------------------------------------
    @property
    def failure(self) -> str | None:
        """Why the session cannot go on (its engine failed for good); None while it can."""
        return self.runner.failed

    def inject_engine_fault(self, message: str = "injected engine fault") -> None:
        """Test hook (any thread): the engine step of the next frame raises RuntimeError(message), which
        takes the recovery path of a real engine failure."""
        self.runner.inject_fault(message)

    # -- the outputs' host -----------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self.interruption.generation

    def is_stale(self, frame: OutputFrame) -> bool:
        return self.interruption.is_stale(frame)

    # -- frames out --------------------------------------------------------------------------
    def add_output(self, output: OutputT) -> OutputT:
        """Start `output` on this session; it gets every frame from the next one on."""
        output.start(self)
        self._outputs.add(output)
        return output

    def remove_output(self, output: Output) -> None:
        """Stop `output` and stop feeding it (no-op if it is not an output of this session)."""
        if output in self._outputs:
            self._outputs.discard(output)
            output.stop()

    @property
    def outputs(self) -> list[Output]:
        return list(self._outputs)

    def _from_worker_frame(self, out: OutputFrame) -> None:
        # Worker thread: encoded once here for every output, off the event loop.
        for message in self.encoders.encode(out):
            self._from_worker_event(ErrorEvent(code="encoder_error", message=message))
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._dispatch, out)

    def _from_worker_event(self, event: Event) -> None:
        stamped = event.stamped(self.id, time.time())
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.publish, stamped)

    def _dispatch(self, out: OutputFrame) -> None:
        self.frames_emitted += 1
        self.frames_skipped += not out.rendered
        self.last_frame = out
        if out.rendered:
            self.latencies_s["render"].append(out.render_s)
        self.latencies_s["emit_lateness"].append((time.monotonic_ns() - out.due_ns) / 1e9)
        for output in list(self._outputs):
            try:
                output.on_frame(out)
            except Exception as exc:  # a broken output is stopped; the session goes on
                log.exception("%s output failed; removing it", output.kind)
                reason = exception_reason(exc)
                output.fail(reason)
                self.remove_output(output)
                message = f"a {output.kind} output failed and was removed ({reason})"
                self.events.publish(
                    ErrorEvent(code="output_error", message=message).stamped(self.id, time.time())
                )

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
            "state": "failed" if self.failure else ("closed" if self.closed else "live"),
            "failure": self.failure,
        }
