"""Decode any audio PyAV reads (wav, mp3, ogg, flac, ...) to float32 mono at 16 kHz."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from facecast.frames import AUDIO_RATE_HZ

MAX_AUDIO_SECONDS = 30 * 60


class AudioError(ValueError):
    """The audio cannot be used; the message is one sentence for the user."""


def decode_audio(source: str | Path | bytes, *, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Whole file → (N,) float32 mono in [-1, 1] at 16 kHz (PyAV decode + libswresample resample)."""
    import av  # heavy import, only when needed

    if isinstance(source, bytes):
        if not source:
            raise AudioError("the audio file is empty")
        handle: str | io.BytesIO = io.BytesIO(source)
        label = "the audio data"
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"audio file {path} does not exist")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file {path} is empty")
        handle, label = str(path), str(path)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(handle, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{label} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += out.samples
                if total > max_seconds * AUDIO_RATE_HZ:
                    raise AudioError(f"{label} is longer than the {max_seconds / 60:.0f} minute limit")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:  # corrupt or unsupported data
        raise AudioError(f"{label} cannot be decoded as audio ({exc})") from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioError(f"{label} contains no audio samples")
    return np.clip(audio, -1.0, 1.0)
