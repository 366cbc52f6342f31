"""Frame pacing, on a clock whose time moves only when the test says (no real-time windows)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from facecast.stream.clock import MAX_LAG_NS, NS_PER_S, FrameClock, ManualClock

FRAME_NS = NS_PER_S // 30


def test_due_times_come_from_the_anchor_without_accumulated_error() -> None:
    clock = FrameClock(30)
    ten_hours = 30 * 3600 * 10
    assert clock.due_ns(ten_hours) - clock.due_ns(0) == 3600 * 10 * NS_PER_S
    assert clock.due_ns(1) - clock.due_ns(0) == NS_PER_S // 30
    assert FrameClock(30).now_ns is time.monotonic_ns  # production time is the monotonic clock


class Worker:
    """A worker thread waiting for frames 0, 1, 2, …; `cost(k)` ns pass on the clock after frame k."""

    def __init__(self, clock: ManualClock, cost: Callable[[int], int] = lambda k: 0) -> None:
        self.clock, self.cost = clock, cost
        self.stop = threading.Event()
        self.returned: list[tuple[int, int]] = []  # (frame, clock time when its wait returned)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k = 0
        while self.clock.wait_for_frame(k, self.stop):
            self.returned.append((k, self.clock.now_ns()))
            self.clock.advance(self.cost(k))
            k += 1


@pytest.fixture
def worker_on() -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(clock: ManualClock, cost: Callable[[int], int] = lambda k: 0) -> Worker:
        workers.append(Worker(clock, cost))
        workers[-1].thread.start()
        return workers[-1]

    yield start
    for w in workers:
        w.stop.set()
        w.thread.join(10)
        assert not w.thread.is_alive()  # a set stop ends a wait on the manual clock too


def test_each_frame_waits_until_it_is_due_and_not_a_nanosecond_less(
    worker_on: Callable[..., Worker],
) -> None:
    clock = ManualClock(30, start_ns=5 * NS_PER_S)
    worker = worker_on(clock)
    assert clock.wait_idle() == 1 and worker.returned == [(0, 5 * NS_PER_S)]  # frame 0 is due at once
    for k in range(1, 8):
        clock.advance_to(clock.due_ns(k) - 1)
        assert clock.wait_idle() == k and len(worker.returned) == k  # still waiting for frame k
        clock.advance_to(clock.due_ns(k))
        assert clock.wait_idle() == k + 1 and worker.returned[-1] == (k, clock.due_ns(k))
    assert [t for _, t in worker.returned] == [5 * NS_PER_S + k * NS_PER_S // 30 for k in range(8)]
    assert clock.reanchors == 0


def test_a_worker_behind_catches_up_but_far_behind_reanchors_instead_of_bursting(
    worker_on: Callable[..., Worker],
) -> None:
    clock = ManualClock(30)
    # Frame 3 costs 433 ms, to 1 ns before frame 16 is due (behind, but by less than MAX_LAG_NS);
    # frame 20 costs 600 ms (far behind).
    costs = {3: clock.due_ns(16) - 1 - clock.due_ns(3), 20: MAX_LAG_NS + 100_000_000}
    worker = worker_on(clock, lambda k: costs.get(k, 0))
    for k in range(1, 3):
        clock.advance_to(clock.due_ns(k))
        assert clock.wait_idle() == k + 1
    clock.advance_to(clock.due_ns(3))
    # Catching up: frames 4..15 are due and follow at once, on the original anchor; frame 16, due 1 ns
    # later, waits again.
    after_stall = clock.due_ns(16) - 1
    assert clock.wait_idle() == 16 and clock.reanchors == 0
    assert worker.returned[4:16] == [(k, after_stall) for k in range(4, 16)]
    clock.advance(1)
    assert clock.wait_idle() == 17 and worker.returned[16] == (16, clock.due_ns(16))
    for k in range(17, 20):
        clock.advance_to(clock.due_ns(k))
        assert clock.wait_idle() == k + 1
    clock.advance_to(clock.due_ns(20))
    # Far behind: frame 21 was due 600 ms - 1 frame ago. It comes at once and is the new anchor, so
    # frames 22, 23, … are not burst out but paced from now.
    late_now = clock.due_ns(20) + costs[20]
    assert clock.wait_idle() == 22 and clock.reanchors == 1
    assert worker.returned[21] == (21, late_now) and clock.due_ns(21) == late_now
    assert clock.due_ns(22) == late_now + FRAME_NS and clock.due_ns(24) == late_now + 3 * NS_PER_S // 30
    clock.advance_to(clock.due_ns(22) - 1)
    assert clock.wait_idle() == 22 and len(worker.returned) == 22
    clock.advance_to(clock.due_ns(24))
    assert clock.wait_idle() == 25 and worker.returned[22:] == [(k, clock.due_ns(24)) for k in (22, 23, 24)]
    assert clock.reanchors == 1


def test_auto_clock_jumps_to_each_due_time_and_counts_only_what_the_worker_spends() -> None:
    clock = ManualClock(30, auto=True)
    stop = threading.Event()
    for k in range(5):
        assert clock.wait_for_frame(k, stop)
        assert clock.now_ns() == clock.due_ns(k)
    clock.advance(2 * FRAME_NS + 1)  # a render that took two frames and a nanosecond
    assert clock.wait_for_frame(5, stop) and clock.now_ns() == clock.due_ns(4) + 2 * FRAME_NS + 1
    assert clock.lateness_s(5) == pytest.approx((FRAME_NS + 1) / NS_PER_S)
    stop.set()
    assert not clock.wait_for_frame(9, stop)


class RecordingStop(threading.Event):
    """A stop event that records how long the clock asks to sleep, and never sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return self.is_set()


def test_the_real_clock_sleeps_exactly_until_due_on_its_stop_event() -> None:
    """FrameClock's own wait (not the manual one): how long it sleeps, and a stop set meanwhile ends it."""
    now = [0]
    clock = FrameClock(30, now_ns=lambda: now[0])
    recording = RecordingStop()
    assert clock.wait_for_frame(0, recording) and recording.timeouts == []  # due now: no wait
    now[0] = clock.due_ns(3) - 1
    assert clock.wait_for_frame(3, recording) and recording.timeouts == [pytest.approx(1e-9)]
    now[0] = clock.due_ns(3) - 2 * FRAME_NS
    assert clock.wait_for_frame(3, recording) and recording.timeouts[1] == pytest.approx(2 * FRAME_NS / 1e9)
    recording.set()
    assert not clock.wait_for_frame(4, recording)
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(clock.wait_for_frame(30 * 3600, stop)))
    waiter.start()  # frame 108000 is due in an hour
    stop.set()
    waiter.join(30)
    assert result == [False]
    now[0] = 2 * NS_PER_S
    assert clock.lateness_s(30) == pytest.approx(1.0)
