import threading
import time

from facecast.stream.clock import NS_PER_S, FrameClock


def test_due_times_come_from_the_anchor_without_accumulated_error() -> None:
    clock = FrameClock(30)
    ten_hours = 30 * 3600 * 10
    assert clock.due_ns(ten_hours) - clock.due_ns(0) == 3600 * 10 * NS_PER_S
    assert clock.due_ns(1) - clock.due_ns(0) == NS_PER_S // 30


def test_far_behind_reanchors_instead_of_bursting() -> None:
    clock = FrameClock(30)
    stop = threading.Event()
    time.sleep(0.6)
    assert clock.wait_for_frame(1, stop)
    assert clock.reanchors == 1 and clock.due_ns(1) <= time.monotonic_ns()
    start = time.monotonic()
    assert clock.wait_for_frame(4, stop)  # now paced again: three frame intervals
    assert 0.07 < time.monotonic() - start < 0.2
