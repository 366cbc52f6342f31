"""The avatar's voice on a local output device: frames' audio from the event loop into PortAudio's
output callback (its own thread) through a small jitter buffer."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from facecast_client.pcm import SERVER_RATE_HZ, PcmConverter
from facecast_client.streams import FrameStream

JITTER_TARGET_S = 0.1  # playback starts (and restarts after running dry) with this much buffered
JITTER_MAX_S = 0.5  # beyond this backlog the oldest audio is dropped (latency, not loss)


class JitterBuffer:
    """int16 mono samples from the event loop to PortAudio's output callback (its own thread).

    Playback starts once `target` samples are buffered, and starts over the same way after running dry
    (so one late frame is one gap, not a click per callback); past `limit` the oldest samples go."""

    def __init__(self, rate: int, target_s: float = JITTER_TARGET_S, limit_s: float = JITTER_MAX_S) -> None:
        self.target = int(target_s * rate)
        self.limit = int(limit_s * rate)
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._size = 0
        self._priming = True
        self.underruns = 0
        self.dropped_samples = 0

    def put(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        with self._lock:
            self._chunks.append(samples)
            self._size += samples.size
            while self._size > self.limit and len(self._chunks) > 1:
                dropped = self._chunks.popleft()
                self._size -= dropped.size
                self.dropped_samples += dropped.size

    def read_into(self, out: np.ndarray) -> None:
        """Fill `out` (int16, one channel) with what is buffered, silence for the rest."""
        n, pos = out.shape[0], 0
        with self._lock:
            if self._priming and self._size < self.target:
                out[:] = 0
                return
            self._priming = False
            while pos < n and self._chunks:
                chunk = self._chunks[0]
                m = min(n - pos, chunk.size)
                out[pos : pos + m] = chunk[:m]
                if m == chunk.size:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[m:]
                pos += m
                self._size -= m
            if pos < n:
                out[pos:] = 0
                self._priming = True
                self.underruns += 1


async def play_frames(frames: FrameStream, buffer: JitterBuffer, rate: int) -> None:
    """The avatar's audio, frame by frame, into the playback buffer (resampled if the device wants it)."""
    resampler = PcmConverter(rate) if rate != SERVER_RATE_HZ else None
    async for frame in frames:
        buffer.put(frame.audio if resampler is None else resampler.convert(frame.audio, SERVER_RATE_HZ))
