"""MP4 files: the H.264/AAC muxer, and the MP4 output that writes what a viewer would see.

Both streams are stamped from the same sample clock: video frame k at k/fps, audio sample n at
n/16000. The AAC encoder's priming samples (1024) come out as a negative first timestamp, which
the MP4 muxer turns into an edit list, so players skip them and audio starts exactly at 0.
A file is written under a temporary name and takes its own only when finished: whole or absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ, OutputFrame, s16_frame
from facecast.outputs.base import Output, OutputHost

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
        frame = s16_frame(samples, self._audio_pts)
        self._audio_pts += frame.samples
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


def partial_path(out: Path) -> Path:
    """Where a file is written until it is whole (then renamed to `out`)."""
    return out.with_name(f".{out.name}.part")


@contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A temporary path that becomes `out` only if the block succeeds: whole or absent."""
    tmp = partial_path(out)
    try:
        yield tmp
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def mp4_file(out: Path, *, fps: int, size: int) -> Iterator[Mp4Writer]:
    """An Mp4Writer on a temporary file that becomes `out` only if the block succeeds: whole or absent."""
    with written_whole(out) as tmp, Mp4Writer(tmp, fps=fps, size=size) as writer:
        yield writer


class Mp4Output(Output):
    """The frames a viewer would see, written to `path` on the calling thread (the recorder calls it from
    its own thread; an offline render from its loop).

    The file starts at the first frame that is not stale; a stale frame (speech from before an interrupt)
    shows no video and plays silence, as at a viewer. Video frame k of the file is session frame first + k
    and its audio is exactly the samples that frame covers, so the audio stays contiguous and in step.
    """

    kind = "mp4"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.frames = 0
        self._writer: Any = None  # Mp4Writer, or a subclass's muxer with the same methods
        self._first: int | None = None

    def start(self, host: OutputHost) -> None:
        super().start(host)
        self._writer = self._open(partial_path(self.path), host)

    def _open(self, path: Path, host: OutputHost) -> Any:
        """The muxer on `path` (an output writing another kind of file opens its own)."""
        return Mp4Writer(path, fps=host.fps, size=host.size)

    def on_frame(self, frame: OutputFrame) -> None:
        self.write(frame.index, frame.image, frame.audio, stale=self.host.is_stale(frame))

    def write(self, index: int, image: np.ndarray, audio: np.ndarray, *, stale: bool = False) -> None:
        """Frame `index`: its image (S, S, 3) uint8 RGB and the audio it covers (float32 16 kHz)."""
        self._write(index, (image,), audio, stale)

    def _write(self, index: int, pictures: tuple[np.ndarray, ...], audio: np.ndarray, stale: bool) -> None:
        """Frame `index`: `pictures` to the muxer's write_video (the image, and an alpha for some)."""
        if self._writer is None:
            raise RuntimeError(f"{self.kind} output written before start() or after stop()")
        if self._first is None:
            if stale:
                return  # the file starts at the first frame a viewer would see
            self._first = index
        if not stale:
            self._writer.write_video(index - self._first, *pictures)
            self.frames += 1
        self._writer.write_audio(np.zeros_like(audio) if stale else audio)

    def stop(self) -> None:
        """Finish the file: it takes its name now (a failed output leaves none)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
                if self.error is None:
                    writer.path.replace(self.path)
            finally:
                writer.path.unlink(missing_ok=True)
        super().stop()

    @property
    def duration_s(self) -> float:
        return self.frames / self.host.fps
