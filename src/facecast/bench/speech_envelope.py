"""The speech track of a media file on its presentation timeline, and its RMS per video frame.

Every decoded audio frame is placed at its own `frame.time`, never at a running sample count, so
an audio stream that starts late (or an MP4 edit list that trims AAC priming samples, which the
demuxer/decoder turn into pts) lands where players put it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.mouth_track import MediaInputError, open_media


@dataclass(frozen=True)
class AudioTrack:
    """samples: (N,) float32 mono in [-1, 1]; times_s: (N,) float64 presentation time of each sample."""

    samples: np.ndarray
    times_s: np.ndarray
    sample_rate: int

    @property
    def start_s(self) -> float:
        return float(self.times_s[0]) if self.times_s.shape[0] else 0.0


def _mono_float(frame: Any) -> np.ndarray:
    """(samples,) float32 mono of an av.AudioFrame, whatever its sample format and layout."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
    else:
        data = data.reshape(-1, channels).T
    if np.issubdtype(data.dtype, np.unsignedinteger):  # u8: centred on 128
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return np.asarray(data.mean(axis=0), dtype=np.float32)


def decode_audio(path: str | Path) -> AudioTrack:
    """Decode the first audio stream of a file to mono float32 with per-sample presentation times."""
    import av

    container = open_media(path)
    with container:
        if not container.streams.audio:
            raise MediaInputError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        times: list[np.ndarray] = []
        rate = int(stream.rate or 0)
        next_time = 0.0
        try:
            for frame in container.decode(stream):
                samples = _mono_float(frame)
                rate = int(frame.sample_rate)
                start = float(frame.time) if frame.time is not None else next_time
                chunks.append(samples)
                times.append(start + np.arange(samples.shape[0], dtype=np.float64) / rate)
                next_time = start + samples.shape[0] / rate
        except av.FFmpegError as exc:
            if not chunks:
                raise MediaInputError(f"{path}: the audio stream cannot be decoded ({exc})") from exc
    if not chunks:
        return AudioTrack(np.zeros(0, np.float32), np.zeros(0, np.float64), rate)
    samples = np.concatenate(chunks)
    sample_times = np.concatenate(times)
    order = np.argsort(sample_times, kind="stable")  # overlapping frames (rare) must not break searchsorted
    return AudioTrack(samples[order], sample_times[order], rate)


def rms_per_frame(audio: AudioTrack, frame_pts_s: np.ndarray, frame_period_s: float) -> np.ndarray:
    """RMS of the samples with time in [pts_k, pts_k + frame_period_s) for each frame; nan where none."""
    starts = np.searchsorted(audio.times_s, frame_pts_s, side="left")
    ends = np.searchsorted(audio.times_s, frame_pts_s + frame_period_s, side="left")
    # Prefix sums of squares make every window O(1); float64 keeps long files exact enough.
    cumulative = np.concatenate([[0.0], np.cumsum(audio.samples.astype(np.float64) ** 2)])
    counts = ends - starts
    energy = cumulative[ends] - cumulative[starts]
    out = np.full(frame_pts_s.shape, np.nan)
    has = counts > 0
    out[has] = np.sqrt(np.maximum(energy[has], 0.0) / counts[has])
    return out
