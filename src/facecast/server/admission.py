"""Admission by capacity: how many sessions this server takes, and when it is already too busy.

Measured with `facecast bench live_capacity` on a 2-core machine at 512x512, 30 fps, warp engine: each
speaking session costs about 0.35 of a core (4.8 ms render + 3 ms encode per frame, plus its viewers and
audio); 4 sessions held 29-30 fps at 1.4 cores, 6 collapsed to 9 fps. One process cannot use much more
than 2 cores however many the machine has (the GIL: the render and encode steps hold it in part), so the
default limit is the sessions that fit in min(cores, 2) at 80 %, scaled by frame size and rate.

A limit from cost alone can still be too high (another program on the machine, a slower CPU), so a new
session is also refused while the sessions already running are late: the server answers 429 with
Retry-After before its viewers see repeated frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SESSION_CORES = 0.35  # one speaking session at 512x512, 30 fps (measured, see above)
REFERENCE_PIXELS_PER_S = 512 * 512 * 30
PROCESS_CORES = 2.0  # what one server process can use (the GIL)
HEADROOM = 0.8  # the share of those cores sessions may plan on
LATE_FRAMES = 1.0  # sessions whose recent frames are this many frame periods late are overloaded
RECENT_FRAMES = 60  # 2 s: a sustained overload, not one slow frame or a session's warm-up
RETRY_AFTER_S = 10
MAX_DEFAULT = 16  # small frames have fixed costs the pixel scaling leaves out


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask, as containers and taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_max_sessions(size: int, fps: int, cores: int | None = None) -> int:
    """Sessions of the warp engine at `size` and `fps` that fit this machine (at least 1)."""
    usable = min(cores if cores is not None else machine_cores(), PROCESS_CORES) * HEADROOM
    cost = SESSION_CORES * (size * size * fps) / REFERENCE_PIXELS_PER_S
    return max(1, min(MAX_DEFAULT, int(usable / cost)))


def overloaded(lateness_s: Iterable[Iterable[float]], fps: int) -> bool:
    """True when any session's recent frames were emitted late by a frame period or more (median)."""
    limit = LATE_FRAMES / fps
    for recent in lateness_s:
        tail = sorted(list(recent)[-RECENT_FRAMES:])
        if len(tail) >= RECENT_FRAMES // 2 and tail[len(tail) // 2] >= limit:
            return True
    return False
