"""Audio at any rate and channel count a TTS or a microphone produces is converted, never refused."""

from __future__ import annotations

import numpy as np
import pytest
from facecast_client.pcm import PcmConverter, as_int16


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count_becomes_16k_mono_in_chunks(rate: int, channels: int) -> None:
    t = np.arange(rate) / rate  # one second of a 440 Hz tone, the same on every channel
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    interleaved = np.repeat(tone[:, None], channels, axis=1).reshape(-1)
    converter = PcmConverter(16000)
    step = (rate // 50) * channels  # 20 ms chunks, as a stream
    parts = [
        converter.convert(interleaved[at : at + step].tobytes(), rate, channels)
        for at in range(0, interleaved.size, step)
    ]
    out = np.concatenate([*parts, converter.flush()]).astype(np.float64)
    assert abs(out.size - 16000) <= 40  # all of it: nothing lost or doubled at chunk boundaries
    spectrum = np.abs(np.fft.rfft(out[1000:15000]))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 440) < 3  # the same tone
    assert 0.4 < out[1000:15000].std() / (0.5 * 32767 / np.sqrt(2)) < 1.1  # at its level, no clicks


def test_float_samples_are_cleaned_and_bad_input_is_refused_in_words() -> None:
    assert as_int16(np.array([np.nan, np.inf, -np.inf, 0.5], np.float32)).tolist() == [
        0,
        32767,
        -32767,
        16383,
    ]
    with pytest.raises(ValueError, match="even number of bytes"):
        as_int16(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="whole frames of 2 channels"):
        PcmConverter().convert(np.zeros(3, np.int16), 16000, channels=2)
    with pytest.raises(ValueError, match="above 0"):
        PcmConverter().convert(np.zeros(4, np.int16), 0)
