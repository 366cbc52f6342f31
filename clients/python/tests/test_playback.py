"""The microphone client's playback buffer and event lines."""

from __future__ import annotations

import numpy as np
from facecast_client.cli import _event_line
from facecast_client.playback import JitterBuffer


def test_jitter_buffer_primes_drops_and_refills() -> None:
    buffer = JitterBuffer(16000, target_s=0.01, limit_s=0.03)  # 160 samples to start, 480 at most
    out = np.ones(100, np.int16)
    buffer.put(np.full(100, 7, np.int16))
    buffer.read_into(out)
    assert not out.any(), "plays before its lead is buffered"
    buffer.put(np.full(100, 8, np.int16))
    buffer.read_into(out)
    assert (out == 7).all()
    buffer.read_into(out)
    assert (out == 8).all()
    buffer.read_into(out)
    assert not out.any() and buffer.underruns == 1
    for value in range(1, 7):  # 600 samples offered, 480 kept: the oldest go
        buffer.put(np.full(100, value, np.int16))
    assert buffer.dropped_samples == 200
    buffer.read_into(out)
    assert (out == 3).all()


def test_event_lines() -> None:
    assert _event_line({"type": "speaking_started", "utterance": 1, "session": "s", "time": 1.0}) == (
        "speaking_started utterance=1"
    )
    finished = {"type": "playback_finished", "utterance": 2, "position": 1.5, "interrupted": False}
    assert _event_line(finished) == "playback_finished utterance=2 position=1.5 interrupted=false"
    error = {"type": "error", "code": "server_shutdown", "message": "the server is shutting down"}
    assert _event_line(error) == 'error code=server_shutdown message="the server is shutting down"'
