"""Live audio input: PCM bytes or WebRTC audio frames to float32 mono 16 kHz.

Each input keeps its own av.AudioResampler so chunk boundaries never click, and accepts chunks
of any size (an odd trailing byte is an error: it cannot be a whole s16 sample).
"""

from __future__ import annotations

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ

SUPPORTED_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
SUPPORTED_FORMATS = ("s16le", "f32le")
MAX_CHANNELS = 2


class AudioInputError(ValueError):
    """Input audio that cannot be used (one clear sentence)."""


class PcmInput:
    """Interleaved PCM (s16le or f32le) at `sample_rate` with `channels` → float32 mono 16 kHz."""

    def __init__(self, sample_rate: int, channels: int = 1, fmt: str = "s16le") -> None:
        if fmt not in SUPPORTED_FORMATS:
            raise AudioInputError(
                f"unsupported PCM format '{fmt}' (supported: {', '.join(SUPPORTED_FORMATS)})"
            )
        if sample_rate not in SUPPORTED_RATES_HZ:
            rates = ", ".join(str(r) for r in SUPPORTED_RATES_HZ)
            raise AudioInputError(f"unsupported sample rate {sample_rate} Hz (supported: {rates})")
        if channels not in (1, 2):
            raise AudioInputError(f"unsupported channel count {channels} (1 or 2)")
        self.sample_rate = sample_rate
        self.channels = channels
        self._dtype = np.dtype("<i2") if fmt == "s16le" else np.dtype("<f4")
        self._frame_bytes = self._dtype.itemsize * channels
        self._resampler = _Resampler(sample_rate)

    def push(self, data: bytes) -> np.ndarray:
        """Decode one chunk; returns float32 mono 16 kHz samples (possibly empty)."""
        if len(data) % self._frame_bytes:
            raise AudioInputError(
                f"PCM chunk of {len(data)} bytes is not a whole number of {self._frame_bytes}-byte sample frames"
            )
        samples = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.channels)
        mono = samples.astype(np.float32).mean(axis=1)
        if self._dtype.kind == "i":
            mono /= 32768.0
        return self._resampler.push(np.clip(mono, -1.0, 1.0))


class FrameInput:
    """av.AudioFrame from a WebRTC track (any rate/layout) → float32 mono 16 kHz."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        frame.pts = None  # the resampler keeps its own continuous timeline
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class _Resampler:
    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._resampler = (
            None
            if rate == AUDIO_RATE_HZ
            else av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
        )

    def push(self, mono: np.ndarray) -> np.ndarray:
        if self._resampler is None or mono.size == 0:
            return mono.astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
