"""Decode any audio PyAV reads (wav, mp3, ogg, flac, ...) to float32 mono at 16 kHz.

Limits come before work: a few kilobytes of FLAC can hold half an hour of silence (hundreds of MB once
decoded), so a stream whose header says it is too long is refused before a frame is decoded, and a
stream whose header does not say is refused as soon as the decoded part passes the limit: memory stays
bounded by the limit, whatever the file claims. Samples come out finite and in [-1, 1].
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facecast.frames import AUDIO_RATE_HZ

if TYPE_CHECKING:
    import av.container

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
    too_long = AudioError(f"{label} is longer than the {_minutes(max_seconds)} limit")
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(handle, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{label} has no audio stream")
            stream = container.streams.audio[0]
            header_s = _header_seconds(container, stream)
            if header_s is not None and header_s > max_seconds:
                raise too_long
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += out.samples
                if total > max_seconds * AUDIO_RATE_HZ:
                    raise too_long
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:  # corrupt or unsupported data
        raise AudioError(f"{label} cannot be decoded as audio ({exc})") from None
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    del chunks  # the concatenated copy replaces them: peak memory stays about twice the audio
    if audio.size == 0:
        raise AudioError(f"{label} contains no audio samples")
    # A float file can hold NaN or inf, which would end a session's engine: silence instead.
    np.nan_to_num(audio, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(audio, -1.0, 1.0, out=audio)


def _header_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the header states (stream, else container), None when it states none.

    Exact for WAV and FLAC; ffmpeg estimates it from the bitrate for some streams (raw MP3, ADTS AAC),
    within a few percent, which is fine for a limit of minutes."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} minute" if seconds >= 60 else f"{seconds:.0f} second"
