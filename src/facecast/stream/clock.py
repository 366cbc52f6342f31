"""Frame pacing from one monotonic anchor, so a session does not drift over hours.

Frame k is due at anchor + k / fps, computed in integer nanoseconds from the anchor (never by
adding per-frame sleeps, which accumulate error). A worker that falls far behind re-anchors
instead of bursting out a backlog of frames.

The clock is the one source of "now" for pacing and for the engine runner's overload policy
(`now_ns`), so tests drive both from `ManualClock`, whose time moves only when told.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

NS_PER_S = 1_000_000_000
MAX_LAG_NS = NS_PER_S // 2  # behind by more than this: re-anchor rather than catch up in a burst


class FrameClock:
    """Real-time pacing for frames at `fps` (thread-safe enough for one worker thread)."""

    realtime = True

    def __init__(self, fps: int, now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.fps = fps
        self.now_ns = now_ns
        self._anchor_ns = now_ns()
        self._anchor_frame = 0
        self.reanchors = 0

    def due_ns(self, k: int) -> int:
        return self._anchor_ns + ((k - self._anchor_frame) * NS_PER_S) // self.fps

    def wait_for_frame(self, k: int, stop: threading.Event) -> bool:
        """Sleep until frame k is due; False when `stop` was set meanwhile."""
        due = self.due_ns(k)
        now = self.now_ns()
        if now - due > MAX_LAG_NS:
            self._anchor_ns, self._anchor_frame = now, k
            self.reanchors += 1
            return not stop.is_set()
        if due > now:
            return self._sleep_until(due, now, stop)
        return not stop.is_set()

    def _sleep_until(self, due_ns: int, now_ns: int, stop: threading.Event) -> bool:
        """Block until `due_ns` (it is `now_ns` now); False when `stop` was set meanwhile."""
        return not stop.wait((due_ns - now_ns) / NS_PER_S)

    def lateness_s(self, k: int) -> float:
        return max(0.0, (self.now_ns() - self.due_ns(k)) / NS_PER_S)


class FreeRunningClock(FrameClock):
    """No waiting: frames come as fast as they render (simulations, benchmarks, offline checks)."""

    realtime = False

    def wait_for_frame(self, k: int, stop: threading.Event) -> bool:
        return not stop.is_set()

    def lateness_s(self, k: int) -> float:
        return 0.0


class ManualClock(FrameClock):
    """A real-time clock whose time moves only when told (tests), so pacing is exact on any machine.

    `advance` / `advance_to` move it from any thread (an engine can `advance` by what a render
    "costs"). A worker waiting for a frame blocks until the clock reaches the frame's due time; with
    `auto=True` the clock jumps there instead (virtual time: only the `advance` calls cost anything).
    `wait_idle` blocks until the worker waits for a frame not yet due, so a test reads what was emitted
    by a given instant.
    """

    def __init__(self, fps: int, start_ns: int = 0, *, auto: bool = False) -> None:
        self._now = start_ns
        self._cond = threading.Condition()
        self.auto = auto
        self.waiting_frame: int | None = None  # the frame a worker is blocked on, None while it works
        self._next_frame = 0
        super().__init__(fps, now_ns=self._read)

    def _read(self) -> int:
        with self._cond:
            return self._now

    def advance(self, ns: int) -> None:
        with self._cond:
            self._now += ns
            self._cond.notify_all()

    def advance_to(self, t_ns: int) -> None:
        with self._cond:
            if t_ns < self._now:
                raise ValueError(f"time runs forward only: {t_ns} < {self._now}")
            self._now = t_ns
            self._cond.notify_all()

    def wait_for_frame(self, k: int, stop: threading.Event) -> bool:
        self._next_frame = k
        return super().wait_for_frame(k, stop)

    def _sleep_until(self, due_ns: int, now_ns: int, stop: threading.Event) -> bool:
        with self._cond:
            if self.auto:
                self._now = max(self._now, due_ns)
                self._cond.notify_all()
                return not stop.is_set()
            self.waiting_frame = self._next_frame
            self._cond.notify_all()
            while self._now < due_ns and not stop.is_set():
                self._cond.wait(0.01)  # stop is a plain Event: look at it now and then
            self.waiting_frame = None
        return not stop.is_set()

    def wait_idle(self, timeout_s: float = 30.0) -> int:
        """Block until a worker waits for a frame not yet due; that frame's index (all before it are out)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.waiting_frame is not None and self.due_ns(self.waiting_frame) > self._now,
                timeout_s,
            ):
                raise TimeoutError(f"no worker waited for a frame within {timeout_s} s")
            return self._next_frame  # = waiting_frame, the frame it is blocked on
