"""The engine worker: one thread per session renders frame k at its due time.

Per tick: apply a pending interrupt, take one frame of audio (speech or silence) from the speech queue
for the frame `lookahead` ahead and push it into the engine (facecast.engine.Engine), then emit the
frame that became ready, with exactly the audio it covers, as an OutputFrame. Rendering never runs on
the event loop; the engine is a plain synchronous object owned by this thread alone, and the runner
uses nothing of it but the engine contract.
"""

from __future__ import annotations

import logging
import threading
import time
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
    OutputFrame,
    frame_samples,
)
from facecast.stream.clock import NS_PER_S, FrameClock
from facecast.stream.events import ErrorEvent, Event, PlaybackFinished, SpeakingStarted, SpeakingStopped
from facecast.stream.speech_queue import Segment, SpeechQueue, Utterance

log = logging.getLogger(__name__)

# Overload policy: a worker more than this many frame periods late repeats the previous image instead
# of rendering. Not 1: on a shared 2-core machine the OS scheduler alone often delays a thread by a
# frame, and a render (~5 ms) catches that up within a frame; 2 still bounds the added latency (~67 ms).
SKIP_AFTER_FRAMES = 2


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
        self._on_frame = on_frame
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.frames_skipped = 0  # emitted with the previous image because the worker ran late
        self.failed: str | None = None
        # Late by more than this at the start of a frame: repeat the previous image instead of
        # rendering (audio and motion state still advance, so speech is neither dropped nor slowed).
        self.skip_after_ns = SKIP_AFTER_FRAMES * NS_PER_S // self.fps if clock.realtime else None

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
            self._on_event(ErrorEvent(code="engine_failed", message=f"the engine failed: {self.failed}"))

    def _loop(self) -> None:
        segments: dict[int, list[Segment]] = {}  # frame index -> the utterance samples its audio carries
        generation = self.queue.generation
        k_out = 0
        previous: np.ndarray | None = None  # the last image emitted
        while self.clock.wait_for_frame(k_out, self._stop):
            due_ns = self.clock.due_ns(k_out)
            if self.queue.generation != generation:
                generation = self._interrupt(segments)
                previous = None  # the first frame after an interrupt is always rendered (idle mouth)
            late = (
                previous is not None
                and self.skip_after_ns is not None
                and time.monotonic_ns() - due_ns > self.skip_after_ns
            )
            t0 = time.perf_counter()
            frames: list[EngineFrame] = []
            while not frames:
                k = self.engine.frames_pushed
                start, end = frame_samples(k, self.fps)
                audio, segments[k], gen = self.queue.take(end - start)
                self.engine.push_audio(AudioBlock(k, audio, gen))
                frames = self.engine.pop_frames(1, render=not late)
            frame = frames[0]
            render_s = time.perf_counter() - t0
            image = frame.image if frame.image is not None else previous
            if image is None:
                raise RuntimeError(f"engine left out the image of frame {frame.index} with none before it")
            if frame.image is None:
                self.frames_skipped += 1
            self._emit(frame, image, segments.pop(frame.index), due_ns, render_s)
            previous = image
            k_out += 1

    def _interrupt(self, segments: dict[int, list[Segment]]) -> int:
        """Silence everything taken but not yet shown; report each dropped utterance once."""
        generation = self.queue.generation
        self.engine.clear_buffer(generation)
        dropped: list[Utterance] = self.queue.take_dropped()
        for index, carried in segments.items():
            dropped.extend(seg.utterance for seg in carried)
            segments[index] = []
        for utt in dict.fromkeys(dropped):
            self._finish(utt, interrupted=True)
        return generation

    def _finish(self, utt: Utterance, interrupted: bool) -> None:
        if utt.finished:
            return
        utt.finished = True
        if utt.started:
            self._on_event(SpeakingStopped(utterance=utt.id))
        position = round(utt.emitted_samples / AUDIO_RATE_HZ, 3)
        self._on_event(PlaybackFinished(utterance=utt.id, position=position, interrupted=interrupted))

    def _emit(
        self, frame: EngineFrame, image: np.ndarray, carried: list[Segment], due_ns: int, render_s: float
    ) -> None:
        audio = frame.audio.samples
        video, sound = to_av_frames(frame.index, self.fps, image, audio)
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
        out = OutputFrame(
            index=frame.index,
            fps=self.fps,
            image=image,
            audio=audio,
            generation=frame.generation,
            speech=any(seg.count for seg in carried),
            video=video,
            audio_frame=sound,
            motion=frame.motion,
            due_ns=due_ns,
            emitted_ns=time.monotonic_ns(),
            render_s=render_s,
            rendered=frame.image is not None,
            utterances=[seg.utterance.id for seg in carried],
        )
        self._on_frame(out)
