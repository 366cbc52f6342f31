"""The engine worker: one thread per session renders frame k at its due time.

Per tick: apply a pending interrupt, take one frame of audio (speech or silence) for the frame
`lookahead` ahead, push it into the engine, and emit the frame that became ready together with
exactly the audio it covers. Rendering never runs on the event loop; the engine (TalkingHead)
is a plain synchronous object owned by this thread alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av
import cv2
import numpy as np

from facecast.frames import AUDIO_RATE_HZ, VideoFrame, frame_samples
from facecast.stream.clock import NS_PER_S, FrameClock
from facecast.stream.speech_queue import Segment, SpeechQueue, Utterance

log = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90000  # RTP video clock; pts of frame k = k * 90000 / fps
# Overload policy: a worker more than this many frame periods late repeats the previous image instead
# of rendering. Not 1: on a shared 2-core machine the OS scheduler alone often delays a thread by a
# frame, and a render (~5 ms) catches that up within a frame; 2 still bounds the added latency (~67 ms).
SKIP_AFTER_FRAMES = 2


class TalkingEngine(Protocol):
    """What the runner needs from an engine (facecast.models.talking_head.TalkingHead)."""

    fps: int
    size: int
    lookahead_frames: int

    def push(self, audio: np.ndarray) -> list[VideoFrame]: ...
    def interrupt(self) -> None: ...


class SkippableEngine(TalkingEngine, Protocol):
    """An engine whose motion (cheap, stateful) and images (costly, per frame) come apart, so an
    overloaded worker may skip images and still keep motion and audio going. Engines opt in with
    `frames_skippable = True` (TalkingHead does; windowed diffusion engines do not)."""

    frames_skippable: bool

    def motions(self, audio: np.ndarray) -> list[Any]: ...
    def render(self, motions: list[Any]) -> list[VideoFrame]: ...


@dataclass(eq=False)
class OutputFrame:
    """Video frame `index` and the audio it covers, as it leaves the session."""

    index: int
    fps: int
    image: np.ndarray  # (S, S, 3) uint8 RGB
    audio: np.ndarray  # float32 16 kHz, samples [frame_start_sample(index), frame_start_sample(index + 1))
    generation: int
    speech: bool  # carries utterance audio (not only silence / live input)
    video: av.VideoFrame  # yuv420p, pts in 1/90000
    audio_frame: av.AudioFrame  # s16 mono 16 kHz, pts = first sample index
    motion: Any = None
    due_ns: int = 0
    emitted_ns: int = 0
    render_s: float = 0.0
    encode_s: float = 0.0  # shared video encoding, all codecs (worker thread)
    rendered: bool = True  # False: the worker was late and repeated the previous image (overload)
    utterances: list[int] = field(default_factory=list)
    packets: dict[str, av.Packet | None] = field(default_factory=dict)  # codec -> this frame encoded

    @property
    def video_time_s(self) -> float:
        return (self.index * VIDEO_CLOCK_HZ // self.fps) / VIDEO_CLOCK_HZ

    @property
    def audio_time_s(self) -> float:
        return frame_samples(self.index, self.fps)[0] / AUDIO_RATE_HZ


@dataclass
class _Pending:
    audio: np.ndarray
    segments: list[Segment]
    generation: int


def to_av_frames(
    index: int, fps: int, image: np.ndarray, audio: np.ndarray
) -> tuple[av.VideoFrame, av.AudioFrame]:
    """Both stamped from the one sample clock: video in 1/90000, audio in 1/16000."""
    # cv2 converts RGB → I420 (BT.601 limited range, as swscale's default) ~4x faster than PyAV's
    # rgb24 frame + reformat, and releases the GIL while it works: with four sessions in one process
    # the conversion was the largest GIL-held step per frame.
    image = np.ascontiguousarray(image)
    if image.shape[0] % 2 or image.shape[1] % 2:  # I420 in cv2 needs even sizes; swscale does not
        video = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    else:
        yuv: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
        video = av.VideoFrame.from_ndarray(yuv.astype(np.uint8, copy=False), format="yuv420p")
    video.pts = index * VIDEO_CLOCK_HZ // fps
    video.time_base = Fraction(1, VIDEO_CLOCK_HZ)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
    sound = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    sound.sample_rate = AUDIO_RATE_HZ
    sound.pts = frame_samples(index, fps)[0]
    sound.time_base = Fraction(1, AUDIO_RATE_HZ)
    return video, sound


class EngineRunner:
    """Runs `engine` in a worker thread paced by `clock`; calls `on_frame` and `on_event` from it."""

    def __init__(
        self,
        engine: TalkingEngine,
        queue: SpeechQueue,
        clock: FrameClock,
        on_frame: Callable[[OutputFrame], None],
        on_event: Callable[[dict[str, Any]], None],
        name: str = "engine",
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.clock = clock
        self.fps = engine.fps
        self._on_frame = on_frame
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.frames_out = 0
        self.frames_skipped = 0  # emitted with the previous image because the worker ran late
        self.failed: str | None = None
        # Late by more than this at the start of a frame: repeat the previous image instead of
        # rendering (audio and motion state still advance, so speech is neither dropped nor slowed).
        self.skip_after_ns = SKIP_AFTER_FRAMES * NS_PER_S // self.fps if clock.realtime else None
        self._split: SkippableEngine | None = (
            engine if getattr(engine, "frames_skippable", False) else None  # type: ignore[assignment]
        )
        self.render_times_s: deque[float] = deque(maxlen=600)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # an engine failure ends this session only
            log.exception("engine worker failed")
            self.failed = str(exc) or type(exc).__name__
            self._on_event({"type": "error", "code": "engine_failed", "message": f"the engine failed: {exc}"})

    def _loop(self) -> None:
        ready: deque[VideoFrame] = deque()
        pending: dict[int, _Pending] = {}
        generation = self.queue.generation
        k_push = 0
        k_out = 0
        previous: np.ndarray | None = None  # the last image emitted
        while self.clock.wait_for_frame(k_out, self._stop):
            due_ns = self.clock.due_ns(k_out)
            if self.queue.generation != generation:
                generation = self._interrupt(pending, ready)
                previous = None  # the first frame after an interrupt is always rendered (idle mouth)
            skip = (
                self._split is not None
                and previous is not None
                and self.skip_after_ns is not None
                and time.monotonic_ns() - due_ns > self.skip_after_ns
            )
            t0 = time.perf_counter()
            while not ready:
                start, end = frame_samples(k_push, self.fps)
                audio, segments, gen = self.queue.take(end - start)
                pending[k_push] = _Pending(audio, segments, gen)
                ready.extend(self._push(audio, previous if skip else None))
                k_push += 1
            frame = ready.popleft()
            render_s = time.perf_counter() - t0
            if frame.index != k_out:
                raise RuntimeError(f"engine emitted frame {frame.index}, expected {k_out}")
            rendered = not (skip and frame.image is previous)
            if rendered:
                self.render_times_s.append(render_s)
            else:
                self.frames_skipped += 1
            self._emit(frame, pending.pop(k_out), due_ns, render_s, rendered)
            previous = frame.image
            k_out += 1

    def _push(self, audio: np.ndarray, repeat: np.ndarray | None) -> list[VideoFrame]:
        """The engine's frames for one more frame of audio; with `repeat`, motion only, that image."""
        if repeat is None or self._split is None:
            return self.engine.push(audio)
        return [VideoFrame(index=m.index, image=repeat, motion=m) for m in self._split.motions(audio)]

    def _interrupt(self, pending: dict[int, _Pending], ready: deque[VideoFrame]) -> int:
        """Silence everything taken but not yet shown; report each dropped utterance once."""
        generation = self.queue.generation
        self.engine.interrupt()
        dropped: list[Utterance] = self.queue.take_dropped()
        for item in pending.values():
            dropped.extend(seg.utterance for seg in item.segments)
            item.audio = np.zeros_like(item.audio)
            item.segments = []
            item.generation = generation
        ready.clear()  # cannot happen with one-frame pushes; frames rendered pre-interrupt must not show
        for utt in dict.fromkeys(dropped):
            self._finish(utt, interrupted=True)
        return generation

    def _finish(self, utt: Utterance, interrupted: bool) -> None:
        if utt.finished:
            return
        utt.finished = True
        if utt.started:
            self._on_event({"type": "speaking_stopped", "utterance": utt.id})
        self._on_event(
            {
                "type": "playback_finished",
                "utterance": utt.id,
                "position": round(utt.emitted_samples / AUDIO_RATE_HZ, 3),
                "interrupted": interrupted,
            }
        )

    def _emit(self, frame: VideoFrame, item: _Pending, due_ns: int, render_s: float, rendered: bool) -> None:
        video, sound = to_av_frames(frame.index, self.fps, frame.image, item.audio)
        speech = any(seg.count for seg in item.segments)
        for seg in item.segments:
            utt = seg.utterance
            if utt.finished:
                continue
            if seg.count and not utt.started:
                utt.started = True
                self._on_event({"type": "speaking_started", "utterance": utt.id})
            utt.emitted_samples += seg.count
            if seg.last:
                self._finish(utt, interrupted=False)
        out = OutputFrame(
            index=frame.index,
            fps=self.fps,
            image=frame.image,
            audio=item.audio,
            generation=item.generation,
            speech=speech,
            video=video,
            audio_frame=sound,
            motion=frame.motion,
            due_ns=due_ns,
            emitted_ns=time.monotonic_ns(),
            render_s=render_s,
            rendered=rendered,
            utterances=[seg.utterance.id for seg in item.segments],
        )
        self.frames_out += 1
        self._on_frame(out)
