"""PCM conversions: whatever a TTS or a microphone produces → what the server takes (s16le mono 16 kHz)."""

from __future__ import annotations

import av
import numpy as np

SERVER_RATE_HZ = 16000


def pcm_s16le(audio: np.ndarray) -> bytes:
    """float32 [-1, 1] → s16le bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def as_int16(pcm: bytes | np.ndarray) -> np.ndarray:
    """s16le bytes, int16 samples or float samples in [-1, 1] → int16 (interleaved when several channels)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % 2:
            raise ValueError(f"s16le PCM has an even number of bytes, not {len(pcm)}")
        return np.frombuffer(pcm, dtype="<i2")
    array = np.asarray(pcm)
    if array.dtype == np.int16:
        return array.reshape(-1)
    if array.dtype.kind == "f":
        cleaned = np.nan_to_num(array.astype(np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        return (np.clip(cleaned, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise ValueError(f"PCM samples must be int16 or float, not {array.dtype}")


class PcmConverter:
    """Interleaved PCM at any rate and channel count → int16 mono at `rate`, as a stream.

    Channels are averaged; the rate is changed by libswresample (PyAV), whose filter state carries
    across chunks so chunk boundaries leave no clicks. A change of input rate starts a new resampler.
    """

    def __init__(self, rate: int = SERVER_RATE_HZ) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._input_rate: int | None = None

    def convert(self, pcm: bytes | np.ndarray, sample_rate: int, channels: int = 1) -> np.ndarray:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(f"a sample rate and channel count above 0, not {sample_rate} Hz x {channels}")
        samples = as_int16(pcm)
        if samples.size % channels:
            raise ValueError(f"{samples.size} samples are not whole frames of {channels} channels")
        mono = samples if channels == 1 else samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if sample_rate == self.rate:
            return mono
        out = self.flush() if self._input_rate not in (None, sample_rate) else np.zeros(0, np.int16)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            self._input_rate = sample_rate
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        return np.concatenate([out, *(f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame))])

    def flush(self) -> np.ndarray:
        """What the resampler still holds (call at the end of an utterance)."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        tail = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        self._resampler, self._input_rate = None, None
        return np.concatenate(tail) if tail else np.zeros(0, np.int16)
