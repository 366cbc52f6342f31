"""The engine contract and the registry of engines by name.

An engine turns a session's audio into its face: the shape of LiveKit's avatar `VideoGenerator`
(push_audio, clear_buffer, frames out with their audio), synchronous, because the engine runner
(stream/engine_runner.py) owns threading and pacing and an engine is a plain object of one thread.

    push_audio(AudioBlock k)  ─►  engine  ─►  pop_frames() → EngineFrames, in order, each with its AudioBlock
    clear_buffer(generation)      (interrupt: audio not yet out becomes silence, frames not yet out relax)

Frame k comes out once the audio of frames up to k + lookahead_frames has been pushed. The base class
keeps each pushed AudioBlock until its frame leaves, so every frame carries exactly the audio it covers.

Engines register by name under the entry-point group `facecast.engines` (pyproject.toml), each naming
a factory `(avatar, fps, render settings) -> Engine`; a third engine is a package with such an entry
point, or a `register_engine` call, and needs no edit to the server.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import numpy as np

from facecast.frames import AudioBlock, EngineFrame, MotionFrame, VideoFrame

if TYPE_CHECKING:
    from facecast.config import RenderSettings

ENTRY_POINT_GROUP = "facecast.engines"


class EngineError(ValueError):
    """An engine cannot be built with these settings (one clear sentence; `code` names the reason)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Engine(ABC):
    """Audio in, timed frames out with their audio. Not thread-safe: one thread drives it.

    fps: frames per second; size: frames are size x size RGB; lookahead_frames: how many frames of audio
    beyond frame k the engine needs before frame k comes out (the pipeline's latency, in frames).
    skippable: the engine can leave a frame's image out (pop_frames(render=False)) while its motion and
    audio advance, so an overloaded live worker keeps time by repeating the previous image.
    transparent: the frames' image is the person's colour, straight, and their alpha is the picture's own
    transparency (background "transparent"): a live session, whose video carries no alpha, sends it packed
    beside the colour (stream/engine_runner.py). Other backgrounds' alpha is already composited in.

    An engine implements three steps: `_advance` (one frame's audio in), `_take` (frames that are ready)
    and `_relax` (an interrupt); the base class pairs frames with their audio and checks the order.
    """

    skippable = False
    transparent = False

    def __init__(self, *, fps: int, size: int, lookahead_frames: int) -> None:
        self.fps = fps
        self.size = size
        self.lookahead_frames = lookahead_frames
        self._audio: deque[AudioBlock] = deque()  # pushed, frame not yet out
        self._next_push = 0
        self._next_out = 0
        self._skip_lost = False  # recover(): frames a failed step lost are skipped, not taken for a bug

    # -- the contract ------------------------------------------------------------------------------
    def push_audio(self, block: AudioBlock) -> None:
        """The audio of frame `block.index` (consecutive from 0, silence when nobody speaks)."""
        if block.index != self._next_push:
            raise ValueError(f"audio for frame {block.index} pushed, frame {self._next_push} expected")
        self._next_push += 1
        self._audio.append(block)
        self._advance(block.samples)

    def pop_frames(self, limit: int | None = None, *, render: bool = True) -> list[EngineFrame]:
        """Up to `limit` frames that are ready, in order. render=False: a skippable engine leaves the
        images out (EngineFrame.image None); other engines render anyway."""
        out = []
        for item in self._take(limit, render or not self.skippable):
            if self._skip_lost:
                while self._audio and self._audio[0].index < item.index:
                    self._audio.popleft()
                self._next_out, self._skip_lost = item.index, False
            block = self._audio.popleft()
            if item.index != self._next_out or block.index != item.index:
                raise RuntimeError(f"engine emitted frame {item.index}, expected {self._next_out}")
            self._next_out += 1
            if isinstance(item, VideoFrame):
                out.append(EngineFrame(item.index, item.image, block, item.motion, item.alpha))
            else:
                out.append(EngineFrame(item.index, None, block, item))
        return out

    def clear_buffer(self, generation: int) -> None:
        """Interrupt: the audio of every frame not yet out becomes silence of `generation`, and those frames
        show a relaxed mouth (the next frame out is idle). Head pose and blinks carry on."""
        for block in self._audio:
            block.samples = np.zeros_like(block.samples)
            block.generation = generation
        self._relax()

    def recover(self, generation: int) -> None:
        """After a step raised (the engine runner goes on): clear_buffer, and frames that step lost are
        skipped, with their audio, instead of being taken for an engine emitting out of order."""
        self._skip_lost = True
        self.clear_buffer(generation)

    def close(self) -> None:  # noqa: B027 (optional: most engines hold nothing beyond themselves)
        """Release what the engine holds beyond itself (e.g. its stream on a shared GPU renderer)."""

    @property
    def frames_pushed(self) -> int:
        return self._next_push

    # -- what an engine implements ----------------------------------------------------------------
    @abstractmethod
    def _advance(self, samples: np.ndarray) -> None:
        """One more frame's audio (float32 mono 16 kHz), in order."""

    @abstractmethod
    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        """Up to `limit` ready frames in order: rendered (VideoFrame) or, with render False, motion only."""

    @abstractmethod
    def _relax(self) -> None:
        """The audio not yet out was silenced: frames not yet out must show a relaxed mouth."""


EngineFactory = Callable[[Any, int, "RenderSettings"], Engine]
"""(avatar: facecast.models.avatar.Avatar, fps, render settings) -> a new engine for one session."""

_factories: dict[str, EngineFactory | str] = {}  # name -> factory, or "module:attr" not yet imported
_lock = threading.Lock()
_discovered = False


def register_engine(name: str, factory: EngineFactory | str) -> None:
    """Make an engine available by name (a factory, or "module:attr" imported on first use)."""
    with _lock:
        _factories[name] = factory


def _discover() -> None:
    global _discovered
    with _lock:
        if _discovered:
            return
        _discovered = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _factories.setdefault(ep.name, ep.value)


def engine_names() -> list[str]:
    _discover()
    return sorted(_factories)


def create_engine(name: str, avatar: Any, fps: int, render: RenderSettings) -> Engine:
    """A new engine `name` for one session; EngineError (one sentence) when it cannot be built."""
    _discover()
    factory = _factories.get(name)
    if factory is None:
        available = ", ".join(engine_names()) or "none: reinstall facecast (pip install -e .)"
        raise EngineError("unsupported_engine", f"engine '{name}' is not available (available: {available})")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(import_module(module), attr)
        register_engine(name, factory)
    return factory(avatar, fps, render)
