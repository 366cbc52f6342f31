"""The session's audio as 20 ms packets stamped from the sample clock (what WebRTC audio must be).

The session hands outputs one video frame's audio at a time: 533 or 534 samples at 16 kHz for 30 fps.
Given to aiortc as is, its Opus encoder turns each into one or two 20 ms packets that all carry the same
RTP timestamp, and browsers conceal a third of the audio. So each viewer cuts its audio here into
20 ms chunks at 48 kHz, stamped by sample index (48 kHz index = 3 × the 16 kHz index), and encodes them
to Opus itself: one packet per chunk, its RTP timestamp exactly the chunk's media time. Opus's own
look-ahead (the encoder's pre-skip) is taken out of the timestamps, so the decoded sample at RTP time t
is the sample the session made at t.

A chunk is complete once the frame holding its last sample arrives; its pts says when it begins on the
media timeline, so a sender can release it at its own time (see webrtc.SessionAudioTrack), and encodes
it only then (`encode`), as silence if an interrupt made it stale meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ, frame_samples

RTP_AUDIO_RATE_HZ = 48_000  # Opus's RTP clock
PACKET_SAMPLES = 960  # 20 ms at 48 kHz: the packet length browsers expect
UPSAMPLE = RTP_AUDIO_RATE_HZ // AUDIO_RATE_HZ
OPUS_BITRATE = 48_000  # mono speech; aiortc's own encoder spends 96 kbit/s on stereo
TIME_BASE = Fraction(1, RTP_AUDIO_RATE_HZ)


class AudioPacketizer:
    """Cuts 16 kHz audio, pushed in order with its first sample's index, into 20 ms chunks at 48 kHz.

    `push` returns the completed chunks as raw frames (pts in 1/48000); `encode` turns one into what a
    sender sends: opus=True, one Opus packet; False, the raw frame (a codec aiortc encodes, such as
    PCMU, which cuts 20 ms frames 1:1 too). A gap in the sample indices (frames a slow viewer
    dropped) ends the current chunk with silence and starts again at the new index, so timestamps
    always stay true to the media timeline.
    """

    def __init__(self, *, opus: bool) -> None:
        self.opus = opus
        self._encoder = _opus_encoder() if opus else None
        self._resampler: av.AudioResampler | None = None
        self._pending = np.empty(0, np.int16)  # 48 kHz samples not yet in a chunk
        self._pending_pts = 0  # 48 kHz index of _pending[0]
        self._next_index: int | None = None  # 16 kHz index the next push should start at

    def push(self, samples: np.ndarray, first_index: int) -> list[av.AudioFrame]:
        """samples: int16 mono 16 kHz starting at sample `first_index`; returns the chunks completed."""
        chunks: list[av.AudioFrame] = []
        if self._next_index is not None and first_index != self._next_index:
            chunks += self._flush()
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RTP_AUDIO_RATE_HZ)
            self._pending_pts = first_index * UPSAMPLE
        self._next_index = first_index + len(samples)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        # swresample holds back its filter's tail rather than delaying, so output sample i is input
        # time i / 48000 and counting samples keeps the stamps exact.
        resampled = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        self._pending = np.concatenate([self._pending, *resampled])
        while len(self._pending) >= PACKET_SAMPLES:
            chunks.append(self._chunk(self._pending[:PACKET_SAMPLES]))
            self._pending = self._pending[PACKET_SAMPLES:]
        return chunks

    def _flush(self) -> list[av.AudioFrame]:
        """Ends the current run: its partial chunk padded with silence; resampling starts afresh."""
        self._resampler = None
        self._next_index = None
        if not len(self._pending):
            return []
        padded = np.zeros(PACKET_SAMPLES, np.int16)
        padded[: len(self._pending)] = self._pending
        self._pending = np.empty(0, np.int16)
        return [self._chunk(padded)]

    def _chunk(self, samples: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RTP_AUDIO_RATE_HZ
        frame.pts = self._pending_pts
        frame.time_base = TIME_BASE
        self._pending_pts += PACKET_SAMPLES
        return frame

    def encode(self, chunk: av.AudioFrame, mute: Sequence[tuple[int, int]] = ()) -> av.AudioFrame | av.Packet:
        """What leaves for `chunk` (from push): its Opus packet, or the frame itself without Opus.

        mute: 48 kHz sample ranges [start, end) on the media timeline to send as silence.
        """
        first = pts_of(chunk)
        spans = [(max(lo, first), min(hi, first + PACKET_SAMPLES)) for lo, hi in mute]
        spans = [(lo, hi) for lo, hi in spans if lo < hi]
        if spans:
            pcm = chunk.to_ndarray().copy()
            for lo, hi in spans:
                pcm[:, lo - first : hi - first] = 0
            quiet = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            quiet.sample_rate, quiet.pts, quiet.time_base = chunk.sample_rate, first, TIME_BASE
            chunk = quiet
        if self._encoder is None:
            return chunk
        packets = self._encoder.encode(chunk)
        # libopus answers each 20 ms frame with exactly one packet, its pts already moved back by the
        # encoder's pre-skip (312 samples): decoded audio then lands on its own media time.
        if len(packets) != 1 or packets[0].pts is None:
            raise RuntimeError(f"libopus returned {len(packets)} packets for one 20 ms frame")
        packet = packets[0]
        packet.time_base = TIME_BASE
        return packet


def completion_lag_s(fps: int) -> float:
    """How long after its own start a 20 ms chunk can become complete, at most (frames at `fps`).

    A chunk is complete when the frame holding its last sample arrives, at that frame's start: at
    30 fps up to 13.3 ms after the chunk's start; at 25 fps (two chunks a frame) never after it.
    """
    lag = 0.0
    for j in range(fps * 50):  # whole seconds: the pattern repeats within one
        last = (j + 1) * PACKET_SAMPLES // UPSAMPLE - 1  # the chunk's last 16 kHz sample
        frame = last * fps // AUDIO_RATE_HZ
        while frame_samples(frame + 1, fps)[0] <= last:  # frame_samples is the one rounding rule
            frame += 1
        while frame_samples(frame, fps)[0] > last:
            frame -= 1
        lag = max(lag, frame_samples(frame, fps)[0] / AUDIO_RATE_HZ - j * PACKET_SAMPLES / RTP_AUDIO_RATE_HZ)
    return lag


def pts_of(chunk: av.AudioFrame) -> int:
    """A chunk's first 48 kHz sample on the media timeline (push always stamps it)."""
    if chunk.pts is None:
        raise ValueError("an audio chunk without pts")
    return int(chunk.pts)


def start_s(chunk: av.AudioFrame) -> float:
    """Where a chunk begins on the media timeline, in seconds."""
    return pts_of(chunk) / RTP_AUDIO_RATE_HZ


def _opus_encoder() -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = RTP_AUDIO_RATE_HZ
    codec.bit_rate = OPUS_BITRATE
    codec.time_base = TIME_BASE
    codec.options = {"application": "voip", "frame_duration": "20"}
    return codec
