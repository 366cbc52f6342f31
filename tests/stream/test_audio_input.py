import numpy as np
import pytest

from facecast.stream.audio_input import AudioInputError, PcmInput


def test_48k_stereo_chunks_of_any_size_resample_to_16k() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    data = np.repeat(tone[:, None], 2, axis=1).tobytes()
    pcm = PcmInput(48000, 2)
    out = np.concatenate([pcm.push(data[i : i + 1236]) for i in range(0, len(data), 1236)])
    assert abs(out.size - 16000) < 200
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5


def test_odd_byte_count_and_bad_rates_are_refused() -> None:
    with pytest.raises(AudioInputError, match="not a whole number"):
        PcmInput(16000).push(b"\x00\x01\x02")
    with pytest.raises(AudioInputError, match="sample rate 12345"):
        PcmInput(12345)
    with pytest.raises(AudioInputError, match="format"):
        PcmInput(16000, 1, "mp3")
