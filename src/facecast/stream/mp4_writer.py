"""Writes video frames and their audio into an H.264/AAC MP4 that ordinary players play in sync.

Both streams are stamped from the same sample clock: video frame k at k/fps, audio sample n at
n/16000. The AAC encoder's priming samples (1024) come out as a negative first timestamp, which
the MP4 muxer turns into an edit list, so players skip them and audio starts exactly at 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ

AAC_FRAME_SAMPLES = 1024


class Mp4Writer:
    def __init__(self, path: Path, *, fps: int, size: int, crf: int = 20, preset: str = "superfast") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.width = size
        self._video.height = size
        self._video.pix_fmt = "yuv420p"
        self._video_tb = Fraction(1, fps)
        self._video.options = {"crf": str(crf), "preset": preset}
        self._audio = self._container.add_stream("aac", rate=AUDIO_RATE_HZ)
        self._audio.layout = "mono"
        self._fifo = av.AudioFifo()
        self._audio_pts = 0
        self.frames_written = 0

    def write_video(self, index: int, image: np.ndarray) -> None:
        """image: (size, size, 3) uint8 RGB for video frame `index`."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = index
        frame.time_base = self._video_tb
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """samples: float32 mono 16 kHz, contiguous with what was written before."""
        if samples.size == 0:
            return
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = self._audio_pts
        frame.time_base = Fraction(1, AUDIO_RATE_HZ)
        self._audio_pts += pcm.shape[1]
        self._fifo.write(frame)
        self._drain(AAC_FRAME_SAMPLES)

    def _drain(self, samples: int) -> None:
        while True:
            chunk = self._fifo.read(samples)
            if chunk is None:
                return
            for packet in self._audio.encode(chunk):
                self._container.mux(packet)

    def close(self) -> None:
        remaining = self._fifo.samples
        if remaining:
            self._drain(remaining)
        for stream in (self._audio, self._video):
            for packet in stream.encode(None):
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def mp4_file(out: Path, *, fps: int, size: int) -> Iterator[Mp4Writer]:
    """An Mp4Writer on a temporary file that becomes `out` only if the block succeeds: whole or absent."""
    tmp = out.with_name(f".{out.name}.part")
    try:
        with Mp4Writer(tmp, fps=fps, size=size) as writer:
            yield writer
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
