"""Frame pacing from one monotonic anchor, so a session does not drift over hours.

Frame k is due at anchor + k / fps, computed in integer nanoseconds from the anchor (never by
adding per-frame sleeps, which accumulate error). A worker that falls far behind re-anchors
instead of bursting out a backlog of frames.
"""

from __future__ import annotations

import threading
import time

NS_PER_S = 1_000_000_000
MAX_LAG_NS = NS_PER_S // 2  # behind by more than this: re-anchor rather than catch up in a burst


class FrameClock:
    """Real-time pacing for frames at `fps` (thread-safe enough for one worker thread)."""

    realtime = True

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self._anchor_ns = time.monotonic_ns()
        self._anchor_frame = 0
        self.reanchors = 0

    def due_ns(self, k: int) -> int:
        return self._anchor_ns + ((k - self._anchor_frame) * NS_PER_S) // self.fps

    def wait_for_frame(self, k: int, stop: threading.Event) -> bool:
        """Sleep until frame k is due; False when `stop` was set meanwhile."""
        due = self.due_ns(k)
        now = time.monotonic_ns()
        if now - due > MAX_LAG_NS:
            self._anchor_ns, self._anchor_frame = now, k
            self.reanchors += 1
            return not stop.is_set()
        if due > now:
            return not stop.wait((due - now) / NS_PER_S)
        return not stop.is_set()

    def lateness_s(self, k: int) -> float:
        return max(0.0, (time.monotonic_ns() - self.due_ns(k)) / NS_PER_S)


class FreeRunningClock(FrameClock):
    """No waiting: frames come as fast as they render (simulations, benchmarks, offline checks)."""

    realtime = False

    def wait_for_frame(self, k: int, stop: threading.Event) -> bool:
        return not stop.is_set()

    def lateness_s(self, k: int) -> float:
        return 0.0
