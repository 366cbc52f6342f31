"""Record exactly what a session streams (the frames and audio its viewers get) to an MP4.

A frame sink on the event loop hands frames to a writer thread (encoding never runs on the
loop). Stamps come from the same sample clock as the tracks: video pts = frame index, audio
pts = sample index, both relative to the first recorded frame.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ, frame_start_sample
from facecast.stream.engine_runner import OutputFrame

log = logging.getLogger(__name__)

AAC_FRAME_SAMPLES = 1024


class Recorder:
    def __init__(self, path: Path, fps: int, size: int, generation: Callable[[], int]) -> None:
        self.path = path
        self.fps = fps
        self.size = size
        self._generation = generation
        self._queue: queue.Queue[OutputFrame | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name=f"recorder-{path.stem}", daemon=True)
        self.frames = 0
        self.error: str | None = None
        self._first: int | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = path.with_suffix(".part.mp4")
        self._thread.start()

    def __call__(self, out: OutputFrame) -> None:
        """Frame sink (event loop): decide stale-speech substitution now, as the tracks do."""
        stale = out.speech and out.generation < self._generation()
        self._queue.put(None if stale else out)
        if stale:
            self._queue.put(_SilenceMarker(out))  # type: ignore[arg-type]

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the file (blocking: call from an executor)."""
        self._queue.put(_END)  # type: ignore[arg-type]
        self._thread.join(timeout)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def _write(self) -> None:
        try:
            self._encode()
            self._tmp.replace(self.path)
        except Exception as exc:
            log.exception("recording failed")
            self.error = str(exc)

    def _encode(self) -> None:
        with av.open(str(self._tmp), "w", format="mp4") as container:
            video = container.add_stream("libx264", rate=self.fps)
            video.width = video.height = self.size
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = Fraction(1, self.fps)
            video.options = {"preset": "veryfast", "tune": "zerolatency"}
            audio = container.add_stream("aac", rate=AUDIO_RATE_HZ, layout="mono")
            resampler = av.AudioResampler(
                format="fltp", layout="mono", rate=AUDIO_RATE_HZ, frame_size=AAC_FRAME_SAMPLES
            )
            while True:
                item = self._queue.get()
                if item is _END:
                    break
                if item is None:
                    continue
                if isinstance(item, _SilenceMarker):
                    self._audio(container, audio, resampler, item.out, silent=True)
                    continue
                if self._first is None:
                    self._first = item.index
                frame = av.VideoFrame.from_ndarray(item.image, format="rgb24")
                frame.pts = item.index - self._first
                frame.time_base = Fraction(1, self.fps)
                container.mux(video.encode(frame))
                self.frames += 1
                self._audio(container, audio, resampler, item, silent=False)
            for f in resampler.resample(None):
                container.mux(audio.encode(f))
            container.mux(audio.encode(None))
            container.mux(video.encode(None))

    def _audio(
        self,
        container: av.container.OutputContainer,
        stream: av.AudioStream,
        resampler: av.AudioResampler,
        out: OutputFrame,
        silent: bool,
    ) -> None:
        if self._first is None:
            return
        samples = np.zeros_like(out.audio) if silent else out.audio
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = frame_start_sample(out.index, self.fps) - frame_start_sample(self._first, self.fps)
        frame.time_base = Fraction(1, AUDIO_RATE_HZ)
        for f in resampler.resample(frame):
            container.mux(stream.encode(f))


class _SilenceMarker:
    def __init__(self, out: OutputFrame) -> None:
        self.out = out


_END = object()
