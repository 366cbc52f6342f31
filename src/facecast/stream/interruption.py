"""Interruption: "stop speaking now", one concept with one owner per session.

The owner is the session's `Interruption`: a generation counter. Each interrupt bumps it, and everything
downstream carries the generation it was made under:

    SpeechQueue.take ─► AudioBlock.generation ─► EngineFrame ─► OutputFrame.generation ─► outputs

What each stage does about it:
- the speech queue drops every queued utterance and live backlog in the same step as the bump (under its
  lock), so no block taken afterwards carries old speech under the new generation;
- the engine runner, seeing a new generation at its next frame, reports the dropped utterances and calls
  the engine's clear_buffer: audio pushed but not yet out turns to silence of the new generation and
  those frames show a relaxed mouth, so the next frame out is idle;
- every output asks `is_stale(frame)` (through its host): frames already made that carry speech of an
  older generation show no video and play silence. This is the only staleness check in the code.
"""

from __future__ import annotations

import threading

from facecast.frames import OutputFrame


class Interruption:
    """A session's interrupt generation (thread-safe: bumped on the event loop, read by the worker)."""

    def __init__(self) -> None:
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    def bump(self) -> int:
        """A new generation; callers that drop queued speech do it in the same critical section."""
        with self._lock:
            self._generation += 1
            return self._generation

    def is_stale(self, frame: OutputFrame) -> bool:
        """Speech made before the latest interrupt: never shown, its audio played as silence."""
        return frame.speech and frame.generation < self._generation
