"""Record exactly what a session streams (the frames and audio its viewers get) to an MP4.

on_frame (event loop) decides staleness now, as the viewer tracks do, and hands the frame to a writer
thread (encoding never runs on the loop), which writes it through an Mp4Output: the same file writer as
offline renders, stamped from the same sample clock as the tracks.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from facecast.frames import OutputFrame
from facecast.outputs.base import Output, OutputHost
from facecast.outputs.mp4_writer import Mp4Output

log = logging.getLogger(__name__)


class Recorder(Output):
    kind = "recording"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._mp4 = Mp4Output(self.path)
        self._queue: queue.Queue[tuple[OutputFrame, bool] | None] = queue.Queue()  # (frame, stale)
        self._thread = threading.Thread(target=self._write, name=f"recorder-{self.path.stem}", daemon=True)

    def start(self, host: OutputHost) -> None:
        super().start(host)
        self._thread.start()  # it opens the file: nothing here blocks the event loop

    def on_frame(self, frame: OutputFrame) -> None:
        self._queue.put((frame, self.host.is_stale(frame)))

    def stop(self) -> None:
        """No more frames; the writer thread finishes the file (`finish` waits for it)."""
        self._queue.put(None)
        super().stop()

    def finish(self, timeout: float = 30.0) -> None:
        """Wait until the file is complete (blocking: call from an executor)."""
        self._thread.join(timeout)

    @property
    def frames(self) -> int:
        return self._mp4.frames

    @property
    def duration_s(self) -> float:
        return self._mp4.duration_s

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "frames": self.frames, "path": str(self.path)}

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._mp4.start(self.host)
            while (item := self._queue.get()) is not None:
                frame, stale = item
                self._mp4.write(frame.index, frame.image, frame.audio, stale=stale)
        except Exception as exc:
            log.exception("recording failed")
            self.fail(str(exc) or type(exc).__name__)
            self._mp4.fail(self.error or "")
        finally:
            try:
                self._mp4.stop()
            except Exception as exc:
                log.exception("recording could not be finished")
                self.fail(str(exc) or type(exc).__name__)
