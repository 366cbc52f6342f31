"""The engine worker: one thread per session renders frame k at its due time.

Per tick: apply a pending interrupt, take one frame of audio (speech or silence) from the speech queue
for the frame `lookahead` ahead and push it into the engine (facecast.engine.Engine), then emit the
frame that became ready, with exactly the audio it covers, as an OutputFrame. Rendering never runs on
the event loop; the engine is a plain synchronous object owned by this thread alone, and the runner
uses nothing of it but the engine contract.

A session survives its engine: a step that raises (push_audio, pop_frames, clear_buffer, or building the
frame) ends what was in flight (an `error` event, then each utterance's playback_finished with
interrupted: true), resets the engine as an interrupt does (Engine.recover), and the frame goes out
with the previous image and silence. Until a step succeeds again the engine is fed silence (queued speech
waits), so the next frames are idle. Only an engine that cannot go on, failing on every frame for
FAILING_FOR_S of media time or failing again and again (more than MAX_FAILURE_RUNS runs of failures
within FAILURE_WINDOW_S), fails the session (`failed`, an `engine_failed` event): the worker stops, its
queue takes no more speech, and viewers keep the last image.

A transparent engine (Engine.transparent: background "transparent") hands out the person's straight colour
and an alpha; WebRTC carries no alpha, so the video frame is packed: 2S x S, the colour on the left and the
alpha as grey (R = G = B = alpha) on the right, for the view page to put together (client_web/view.js).
OutputFrame.image stays the S x S colour and OutputFrame.alpha the alpha. A skipped frame repeats the last
alpha with the last image; a stand-in before any image is fully transparent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import cv2
import numpy as np

from facecast.engine import Engine
from facecast.frames import (
    AUDIO_RATE_HZ,
    VIDEO_CLOCK_HZ,
    AudioBlock,
    EngineFrame,
    MotionFrame,
    OutputFrame,
    frame_samples,
    s16_frame,
)
from facecast.stream.alpha_packing import packed_alpha_i420
from facecast.stream.clock import NS_PER_S, FrameClock
from facecast.stream.events import ErrorEvent, Event, PlaybackFinished, SpeakingStarted, SpeakingStopped
from facecast.stream.speech_queue import Segment, SpeechQueue, Utterance

log = logging.getLogger(__name__)

# Overload policy: a worker more than this many frame periods late repeats the previous image instead
# of rendering. Not 1: on a shared 2-core machine the OS scheduler alone often delays a thread by a
# frame, and a render (~5 ms) catches that up within a frame; 2 still bounds the added latency (~67 ms).
SKIP_AFTER_FRAMES = 2
# Failure policy (media time, counted in frames so it does not depend on the machine's speed): an engine
# that fails on every frame for a second, even on the idle audio it gets after the first failure, cannot
# go on; nor can one that keeps failing again right after recovering (the 6th run within 10 s).
FAILING_FOR_S = 1.0
MAX_FAILURE_RUNS = 5
FAILURE_WINDOW_S = 10.0
REASON_CHARS = 200  # an exception's text in an event: one line, bounded


class EngineFailed(Exception):
    """The engine cannot go on; the message says why (one sentence)."""


def to_av_frames(
    index: int, fps: int, image: np.ndarray, audio: np.ndarray, alpha: np.ndarray | None = None
) -> tuple[av.VideoFrame, av.AudioFrame]:
    """Both stamped from the one sample clock: video in 1/90000, audio in 1/16000. With `alpha` ((S, S)
    uint8) the video frame is the packed picture, 2S x S: `image` on the left, the alpha as grey on the right."""
    # cv2 converts RGB → I420 (BT.601 limited range, as swscale's default) ~4x faster than PyAV's
    # rgb24 frame + reformat, and releases the GIL while it works: with four sessions in one process
    # the conversion was the largest GIL-held step per frame.
    image = np.ascontiguousarray(image)
    if image.shape[0] % 2 or image.shape[1] % 2:  # I420 in cv2 needs even sizes; swscale does not
        if alpha is not None:
            image = np.concatenate([image, np.repeat(alpha[:, :, None], 3, axis=2)], axis=1)
        video = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    elif alpha is not None:
        video = av.VideoFrame.from_ndarray(packed_alpha_i420(image, alpha), format="yuv420p")
    else:
        yuv: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
        video = av.VideoFrame.from_ndarray(yuv.astype(np.uint8, copy=False), format="yuv420p")
    video.pts = index * VIDEO_CLOCK_HZ // fps
    video.time_base = Fraction(1, VIDEO_CLOCK_HZ)
    return video, s16_frame(audio, frame_samples(index, fps)[0])


class EngineRunner:
    """Runs `engine` in a worker thread paced by `clock`; calls `on_frame` and `on_event` from it."""

    def __init__(
        self,
        engine: Engine,
        queue: SpeechQueue,
        clock: FrameClock,
        on_frame: Callable[[OutputFrame], None],
        on_event: Callable[[Event], None],
        name: str = "engine",
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.clock = clock
        self.fps = engine.fps
        self.transparent = engine.transparent  # video frames carry the alpha packed beside the colour
        self._on_frame = on_frame
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.frames_skipped = 0  # emitted with the previous image because the worker ran late
        self.failures = 0  # engine steps that raised (each ended what was in flight)
        self.failed: str | None = None  # why the session cannot go on (the worker stopped)
        # Late by more than this at the start of a frame: repeat the previous image instead of
        # rendering (audio and motion state still advance, so speech is neither dropped nor slowed).
        self.skip_after_ns = SKIP_AFTER_FRAMES * NS_PER_S // self.fps if clock.realtime else None
        # Worker state. segments: frame index -> the utterance samples its audio carries.
        self._segments: dict[int, list[Segment]] = {}
        self._taken_in: dict[int, int] = {}  # frame index -> the generation its audio was taken in
        self._generation = queue.generation
        self._last_image: np.ndarray | None = None
        self._last_alpha: np.ndarray | None = None  # transparent engines only
        self._last_motion: MotionFrame | None = None
        self._render_next = True  # the first frame, and the first after an interrupt, is always rendered
        self._failing_since: int | None = None  # first frame of the current run of failed steps
        self._failure_runs: deque[int] = deque()  # first frames of recent runs (FAILURE_WINDOW_S)
        self._fault: str | None = None  # inject_fault(): raised in the next engine step
        self._fault_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def inject_fault(self, message: str) -> None:
        """Test hook (any thread): the next frame's engine step raises RuntimeError(message)."""
        with self._fault_lock:
            self._fault = message

    def _run(self) -> None:
        try:
            self._loop()
        except EngineFailed as exc:
            self._fail(str(exc))
        except Exception as exc:  # outside the engine step (a frame callback): this session only
            log.exception("engine worker failed")
            self._fail(f"the engine worker failed: {exception_reason(exc)}")

    def _loop(self) -> None:
        k = 0
        while self.clock.wait_for_frame(k, self._stop):
            due_ns = self.clock.due_ns(k)
            try:
                out = self._make(k, due_ns)
                self._failing_since = None
            except Exception as exc:
                out = self._recover(k, due_ns, exc)
            self._on_frame(out)
            k = out.index + 1

    def _make(self, k: int, due_ns: int) -> OutputFrame:
        """Frame k (or a later one if the engine lost k) with its audio; raises what the engine raises."""
        if self.queue.generation != self._generation:
            self._interrupt()
        late = (
            not self._render_next
            and self.skip_after_ns is not None
            and self.clock.now_ns() - due_ns > self.skip_after_ns  # the clock's time: tests drive it
        )
        t0 = time.perf_counter()
        frame = self._engine_frame(k, late)
        render_s = time.perf_counter() - t0
        image = frame.image if frame.image is not None else self._last_image
        if image is None:
            raise RuntimeError(f"engine left out the image of frame {frame.index} with none before it")
        alpha = self._alpha(frame, image)
        carried = self._segments.get(frame.index, [])
        out = self._output(
            frame.index, image, frame.audio.samples, frame.generation, frame.motion, due_ns,
            carried=carried, render_s=render_s, rendered=frame.image is not None, alpha=alpha,
        )  # fmt: skip
        self._forget(frame.index)  # only once the frame is made: a failure above still ends them
        self._report(carried)
        self.frames_skipped += frame.image is None
        self._last_image, self._last_motion, self._render_next = image, frame.motion, False
        self._last_alpha = alpha
        return out

    def _alpha(self, frame: EngineFrame, image: np.ndarray) -> np.ndarray | None:
        """The alpha packed into frame's video: a transparent engine's (the last one with a repeated image;
        opaque for an image that came without one); None when the session is not transparent."""
        if not self.transparent:
            return None
        if frame.image is None and self._last_alpha is not None:
            return self._last_alpha
        if frame.alpha is not None:
            return frame.alpha
        return np.full(image.shape[:2], 255, np.uint8)

    def _engine_frame(self, k: int, late: bool) -> EngineFrame:
        """Push frames' audio until the engine hands out frame k or later. While it is failing it gets
        silence: queued speech waits for an engine that works again instead of being lost to it."""
        with self._fault_lock:
            fault, self._fault = self._fault, None
        if fault is not None:
            raise RuntimeError(fault)
        while True:
            n = self.engine.frames_pushed
            start, end = frame_samples(n, self.fps)
            if self._failing_since is None:
                audio, self._segments[n], generation = self.queue.take(end - start)
                self._taken_in[n] = generation
            else:
                audio, generation = np.zeros(end - start, np.float32), self.queue.generation
            self.engine.push_audio(AudioBlock(n, audio, generation))
            for frame in self.engine.pop_frames(1, render=not late):
                if frame.index >= k:
                    return frame
                self._forget(frame.index)  # held through a failure: a stand-in went out for it

    def _interrupt(self) -> None:
        """Silence everything taken but not yet shown; report each dropped utterance once."""
        self._generation = self.queue.generation
        self._render_next = True  # the first frame after an interrupt is always rendered (idle mouth)
        # Audio taken in the new generation (an utterance begun between the interrupt and this check, taken
        # while the worker was mid-step) is not stale: it plays on, and its utterance is not ended.
        self._end_in_flight(self.queue.take_dropped(), before=self._generation)
        self.engine.clear_buffer(self._generation)

    def _recover(self, k: int, due_ns: int, exc: Exception) -> OutputFrame:
        """The engine step of frame k raised: end what was in flight, reset the engine, and stand in for
        the frame with the previous image; raises EngineFailed when the engine cannot go on."""
        self.failures += 1
        reason = exception_reason(exc)
        if self._failing_since is None:  # a new run of failures
            log.exception("engine step failed at frame %d; recovering", k)
            self._failing_since = k
            self._failure_runs.append(k)
            while self._failure_runs[0] < k - FAILURE_WINDOW_S * self.fps:
                self._failure_runs.popleft()
            if len(self._failure_runs) > MAX_FAILURE_RUNS:
                raise EngineFailed(
                    f"the engine failed {len(self._failure_runs)} times within {FAILURE_WINDOW_S:.0f} s"
                    f" (last: {reason})"
                )
            message = f"the engine failed at frame {k} and what was playing was stopped ({reason})"
            self._on_event(ErrorEvent(code="engine_error", message=message))
        elif k - self._failing_since >= FAILING_FOR_S * self.fps:
            raise EngineFailed(f"the engine failed on every frame for {FAILING_FOR_S:g} s (last: {reason})")
        self._end_in_flight(self.queue.abort_in_flight())
        self._render_next = True
        try:
            self.engine.recover(self.queue.generation)
        except Exception:  # still broken: the next step says so, and the policy above counts it
            log.debug("engine recover failed", exc_info=True)
        return self._stand_in(k, due_ns)

    def _stand_in(self, k: int, due_ns: int) -> OutputFrame:
        """Frame k while the engine recovers: the previous image (black before any) and silence."""
        image = self._last_image
        if image is None:
            image = np.zeros((self.engine.size, self.engine.size, 3), np.uint8)
        alpha = None
        if self.transparent:  # the last alpha, or nothing shows before the first image
            alpha = self._last_alpha if self._last_alpha is not None else np.zeros(image.shape[:2], np.uint8)
        start, end = frame_samples(k, self.fps)
        silence = np.zeros(end - start, np.float32)
        return self._output(
            k, image, silence, self.queue.generation, self._last_motion, due_ns, rendered=False, alpha=alpha
        )

    def _output(
        self,
        index: int,
        image: np.ndarray,
        audio: np.ndarray,
        generation: int,
        motion: MotionFrame | None,
        due_ns: int,
        *,
        carried: list[Segment] | None = None,
        render_s: float = 0.0,
        rendered: bool,
        alpha: np.ndarray | None = None,
    ) -> OutputFrame:
        """The OutputFrame of frame `index`: av frames stamped from the sample clock (the video packed with
        `alpha` when given), and the utterance samples it carries (`carried`)."""
        video, sound = to_av_frames(index, self.fps, image, audio, alpha)
        carried = carried or []
        return OutputFrame(
            index=index,
            fps=self.fps,
            image=image,
            audio=audio,
            generation=generation,
            speech=any(seg.count for seg in carried),
            video=video,
            audio_frame=sound,
            motion=motion,
            alpha=alpha,
            due_ns=due_ns,
            emitted_ns=time.monotonic_ns(),
            render_s=render_s,
            rendered=rendered,
            utterances=[seg.utterance.id for seg in carried],
            ended=[seg.utterance.id for seg in carried if seg.last],
        )

    def _fail(self, reason: str) -> None:
        """The session cannot go on: say why, take no more speech, and end everything queued."""
        log.error("session engine failed: %s", reason)
        self.failed = reason
        self._on_event(ErrorEvent(code="engine_failed", message=reason))
        self._end_in_flight(self.queue.close(f"the session cannot speak: {reason}"))

    def _end_in_flight(self, dropped: list[Utterance], before: int | None = None) -> None:
        """End `dropped` and every utterance carried by frames not yet shown (interrupted), once each;
        `before`: only frames whose audio was taken in an older generation (the rest play on)."""
        for n in list(self._segments):
            if before is None or self._taken_in.get(n, before - 1) < before:
                dropped.extend(seg.utterance for seg in self._segments[n])
                self._forget(n)  # their audio is silenced in the engine (clear_buffer / recover)
        for utt in dict.fromkeys(dropped):
            self._finish(utt, interrupted=True)

    def _forget(self, n: int) -> None:
        self._segments.pop(n, None)
        self._taken_in.pop(n, None)

    def _report(self, carried: list[Segment]) -> None:
        """Events for the utterance samples a frame carries out."""
        for seg in carried:
            utt = seg.utterance
            if utt.finished:
                continue
            if seg.count and not utt.started:
                utt.started = True
                self._on_event(SpeakingStarted(utterance=utt.id))
            utt.emitted_samples += seg.count
            if seg.last:
                self._finish(utt, interrupted=False)

    def _finish(self, utt: Utterance, interrupted: bool) -> None:
        if utt.finished:
            return
        utt.finished = True
        if utt.started:
            self._on_event(SpeakingStopped(utterance=utt.id))
        position = round(utt.emitted_samples / AUDIO_RATE_HZ, 3)
        self._on_event(PlaybackFinished(utterance=utt.id, position=position, interrupted=interrupted))


def exception_reason(exc: BaseException) -> str:
    """An exception as a bounded single line for an event."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
