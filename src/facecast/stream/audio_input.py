"""Live audio input: PCM bytes or WebRTC audio frames to float32 mono 16 kHz.

Each input keeps its own av.AudioResampler so chunk boundaries never click, and accepts chunks
of any size (an odd trailing byte is an error: it cannot be a whole s16 sample).

Float input can hold NaN, inf or values far outside [-1, 1]: one NaN reaching the engine's motion
state used to end a session. Every input here hands on finite samples in [-1, 1] (`clean_audio`), and
does so before its resampler, whose filter would otherwise smear a NaN across its neighbours.
"""

from __future__ import annotations

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ

SUPPORTED_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
SUPPORTED_FORMATS = ("s16le", "f32le")
MAX_CHANNELS = 2
_FLOAT_FORMATS = ("flt", "fltp", "dbl", "dblp")


def clean_audio(samples: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1]: NaN and ±inf become silence, the rest is clipped.

    One pass over a clean chunk (the comparison is False for NaN and ±inf too); only a chunk that needs
    repair is copied."""
    samples = samples.astype(np.float32, copy=False)
    if (np.abs(samples) <= 1.0).all():
        return samples
    return np.clip(np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)


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
        with np.errstate(over="ignore", invalid="ignore"):  # huge or inf f32 input: cleaned just below
            mono = samples.astype(np.float32).mean(axis=1)
        if self._dtype.kind == "i":
            mono /= 32768.0
        return self._resampler.push(clean_audio(mono))


class FrameInput:
    """av.AudioFrame from a WebRTC track (any rate/layout) → float32 mono 16 kHz."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        if frame.format.name in _FLOAT_FORMATS:  # integer samples are always finite and in range
            frame = _clean_frame(frame)
        frame.pts = None  # the resampler keeps its own continuous timeline
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        # The resampler's filter overshoots [-1, 1] a little on full-scale input.
        return np.clip(np.concatenate(out), -1.0, 1.0) if out else np.zeros(0, np.float32)


def _clean_frame(frame: av.AudioFrame) -> av.AudioFrame:
    """`frame` itself when its float samples are all in [-1, 1], else a float32 copy through clean_audio."""
    samples = frame.to_ndarray()
    if (np.abs(samples) <= 1.0).all():
        return frame
    fmt = "fltp" if frame.format.is_planar else "flt"
    fixed = av.AudioFrame.from_ndarray(clean_audio(samples), format=fmt, layout=frame.layout.name)
    fixed.sample_rate = frame.sample_rate
    return fixed


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
        # The resampler's filter overshoots [-1, 1] a little on full-scale input.
        return np.clip(np.concatenate(out), -1.0, 1.0) if out else np.zeros(0, np.float32)
