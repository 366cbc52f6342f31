"""aiortc tracks fed from a session: one video and one audio track per viewer.

The session paces frames, so recv() just waits for the next one (no sleeping here). Both
tracks stamp pts from the one sample clock. Frames from before an interrupt that carry speech
are never sent: video skips them, audio substitutes silence with the same pts so the audio
timeline (which the Opus encoder counts in samples) stays continuous.
"""

from __future__ import annotations

import time
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from facecast.frames import AUDIO_RATE_HZ
from facecast.stream.engine_runner import OutputFrame
from facecast.stream.fanout import Closed, Subscriber
from facecast.stream.session import SessionRuntime

VIDEO_QUEUE_FRAMES = 3  # ~100 ms: a slow viewer drops old video rather than falling behind
AUDIO_QUEUE_FRAMES = 30  # ~1 s of audio cover for event-loop hiccups
SENT_LOG_FRAMES = 300  # recent sends, for latency measurements


class _SessionTrack(MediaStreamTrack):
    def __init__(self, session: SessionRuntime, maxlen: int) -> None:
        super().__init__()
        self.session = session
        self._sub: Subscriber[OutputFrame] = session.subscribe(maxlen)
        self.sent = 0
        self.last_sent: OutputFrame | None = None
        self.last_anchor_s: float | None = None  # wall clock minus media time of the last frame sent
        self.sent_log: deque[tuple[float, OutputFrame]] = deque(
            maxlen=SENT_LOG_FRAMES
        )  # (monotonic s, frame)

    async def _next(self) -> OutputFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            out = await self._sub.get()
        except Closed:
            self.stop()
            raise MediaStreamError from None
        self.sent += 1
        self.last_sent = out
        return out

    def _mark(self, out: OutputFrame, media_time_s: float) -> None:
        now = time.monotonic()
        self.last_anchor_s = now - media_time_s
        self.sent_log.append((now, out))

    @property
    def queue_depth(self) -> int:
        return len(self._sub)

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def stop(self) -> None:
        self.session.unsubscribe(self._sub)
        super().stop()


class SessionVideoTrack(_SessionTrack):
    kind = "video"

    def __init__(self, session: SessionRuntime) -> None:
        super().__init__(session, VIDEO_QUEUE_FRAMES)

    async def recv(self) -> av.VideoFrame:
        while True:
            out = await self._next()
            if out.speech and out.generation < self.session.generation:
                continue  # speech from before an interrupt
            self._mark(out, out.video_time_s)
            return out.video


class SessionAudioTrack(_SessionTrack):
    kind = "audio"

    def __init__(self, session: SessionRuntime) -> None:
        super().__init__(session, AUDIO_QUEUE_FRAMES)

    async def recv(self) -> av.AudioFrame:
        out = await self._next()
        self._mark(out, out.audio_time_s)
        if out.speech and out.generation < self.session.generation:
            return silent_like(out.audio_frame)
        return out.audio_frame


def silent_like(frame: av.AudioFrame) -> av.AudioFrame:
    silence = av.AudioFrame.from_ndarray(np.zeros((1, frame.samples), np.int16), format="s16", layout="mono")
    silence.sample_rate = AUDIO_RATE_HZ
    silence.pts = frame.pts
    silence.time_base = Fraction(1, AUDIO_RATE_HZ)
    return silence


def av_offset_s(video: SessionVideoTrack, audio: SessionAudioTrack) -> float | None:
    """How much later video leaves than audio for the same media instant (seconds)."""
    if video.last_anchor_s is None or audio.last_anchor_s is None:
        return None
    return video.last_anchor_s - audio.last_anchor_s
