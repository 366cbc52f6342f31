"""The one interface of everything a session's frames go out to: viewers' WebRTC tracks, the recorder,
MP4 files (and RTMP/SRT pushes, SFU publishing, alpha compositing as they come).

A session (stream/session.py) fans every OutputFrame out to its outputs on the event loop:

    start(host) ─► on_frame(frame) per frame ─► stop()        state: new → live → stopped | failed

on_frame must not block the loop: an output that does slow work (writing a file, pushing to a network)
hands frames to its own thread or task. Frames from before an interrupt that carry speech are stale:
every output asks `host.is_stale(frame)`, the session's one check (stream/interruption.py), and shows
none of their video and plays silence for their audio.
Outputs never import engines, the real-time core or the server: they know the session only as OutputHost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from facecast.frames import OutputFrame
from facecast.outputs.video_encoder import EncoderPool


class OutputState(StrEnum):
    NEW = "new"
    LIVE = "live"
    STOPPED = "stopped"
    FAILED = "failed"


class OutputHost(Protocol):
    """What an output knows of the session feeding it (stream.session.SessionRuntime is one)."""

    fps: int
    size: int
    encoders: EncoderPool  # the session's shared video encoders: one encode per frame for all outputs

    @property
    def generation(self) -> int: ...
    def is_stale(self, frame: OutputFrame) -> bool: ...


@dataclass
class StaticHost:
    """A host for outputs fed without a live session (offline renders): nothing is ever interrupted."""

    fps: int
    size: int
    encoders: EncoderPool = field(init=False)
    generation: int = 0

    def __post_init__(self) -> None:
        self.encoders = EncoderPool(self.size, self.fps)

    def is_stale(self, frame: OutputFrame) -> bool:
        return False


class Output(ABC):
    """A sink of a session's frames. Subclasses implement on_frame, and start/stop when they hold resources."""

    kind: ClassVar[str] = "output"

    def __init__(self) -> None:
        self.state = OutputState.NEW
        self.error: str | None = None
        self._host: OutputHost | None = None

    @property
    def host(self) -> OutputHost:
        if self._host is None:
            raise RuntimeError(f"{self.kind} output used before start()")
        return self._host

    def start(self, host: OutputHost) -> None:
        """Attach to the session (event loop); frames follow."""
        self._host = host
        self.state = OutputState.LIVE

    @abstractmethod
    def on_frame(self, frame: OutputFrame) -> None:
        """One frame (event loop; never blocks)."""

    def stop(self) -> None:
        """No more frames; release what the output holds (never blocks: slow finishing runs elsewhere)."""
        if self.state is not OutputState.FAILED:
            self.state = OutputState.STOPPED

    def fail(self, reason: str) -> None:
        self.state = OutputState.FAILED
        self.error = reason

    def stats(self) -> dict[str, Any]:
        """What /v1 and /metrics report of this output."""
        return {"kind": self.kind, "state": str(self.state), **({"error": self.error} if self.error else {})}
