"""Record exactly what a session streams (the frames and audio its viewers get) to an MP4.

A frame sink on the event loop hands frames to a writer thread (encoding never runs on the
loop), which writes them with the same Mp4Writer as offline renders (one H.264/AAC muxer, with its
AAC priming handled once). Stamps come from the same sample clock as the tracks: video frame k of
the recording is session frame first + k, and its audio is exactly the samples that frame covers,
so the audio track stays contiguous and in step with the video.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facecast.stream.engine_runner import OutputFrame
from facecast.stream.mp4_writer import Mp4Writer, mp4_file

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, path: Path, fps: int, size: int, generation: Callable[[], int]) -> None:
        self.path = path
        self.fps = fps
        self.size = size
        self._generation = generation
        # (frame, stale): a stale frame is speech from before an interrupt; like the tracks, its
        # video is not shown and its audio becomes silence.
        self._queue: queue.Queue[tuple[OutputFrame, bool] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name=f"recorder-{path.stem}", daemon=True)
        self.frames = 0
        self.error: str | None = None
        self._first: int | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def __call__(self, out: OutputFrame) -> None:
        """Frame sink (event loop): decide stale-speech substitution now, as the tracks do."""
        self._queue.put((out, out.speech and out.generation < self._generation()))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the file (blocking: call from an executor)."""
        self._queue.put(None)
        self._thread.join(timeout)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def _write(self) -> None:
        try:
            with mp4_file(self.path, fps=self.fps, size=self.size) as writer:
                while (item := self._queue.get()) is not None:
                    self._frame(writer, *item)
        except Exception as exc:
            log.exception("recording failed")
            self.error = str(exc)

    def _frame(self, writer: Mp4Writer, out: OutputFrame, stale: bool) -> None:
        if self._first is None:
            if stale:
                return  # the recording starts at the first frame a viewer would see
            self._first = out.index
        if not stale:
            writer.write_video(out.index - self._first, out.image)
            self.frames += 1
        writer.write_audio(np.zeros_like(out.audio) if stale else out.audio)
