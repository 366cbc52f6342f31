"""Every audio input hands on finite samples in [-1, 1]: one NaN reaching the engine used to end a session."""

from __future__ import annotations

import av
import numpy as np
import pytest

from facecast.stream.audio_input import FrameInput, PcmInput
from facecast.stream.speech_queue import SpeechQueue

BAD = [np.nan, np.inf, -np.inf, 1e30, -3.4e38, 7.5]


def poisoned(n: int, value: float = 0.25) -> np.ndarray:
    """n float32 samples of `value` with every kind of bad sample near the start."""
    samples = np.full(n, value, np.float32)
    samples[10 : 10 + len(BAD)] = BAD
    return samples


def assert_clean(audio: np.ndarray) -> None:
    assert audio.dtype == np.float32 and audio.size
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_f32_with_nan_inf_and_huge_values_comes_out_finite_and_in_range(rate: int, channels: int) -> None:
    pcm = PcmInput(rate, channels, "f32le")
    mono = poisoned(rate // 10)
    data = np.repeat(mono[:, None], channels, axis=1).tobytes()
    out = np.concatenate([pcm.push(data), pcm.push(np.full(rate // 10 * channels, 0.25, "<f4").tobytes())])
    assert_clean(out)
    if rate == 16000:  # no resampler: the bad samples are silence or clipped, the rest passes unchanged
        assert out[10:13].tolist() == [0.0, 0.0, 0.0] and out[13] == out[15] == 1.0
        assert out[14] == (-1.0 if channels == 1 else 0.0)  # the mean of 2 x -3.4e38 overflows to -inf
        np.testing.assert_array_equal(out[100:], 0.25)
    else:  # the resampler was never fed a NaN: the audio after the bad samples is untouched by them
        np.testing.assert_allclose(out[200:], 0.25, atol=0.02)


def test_a_nan_alone_in_a_websocket_chunk() -> None:
    """The finding: 3200 bytes of float32 zeros holding one NaN."""
    chunk = np.zeros(800, "<f4")
    chunk[123] = np.nan
    out = PcmInput(16000, 1, "f32le").push(chunk.tobytes())
    assert_clean(out)
    assert not out.any()


@pytest.mark.parametrize("fmt", ["flt", "fltp", "dbl"])
def test_webrtc_float_frames_with_bad_samples_come_out_finite_and_in_range(fmt: str) -> None:
    dtype = np.float64 if fmt.startswith("dbl") else np.float32
    layout = "stereo" if fmt == "flt" else "mono"

    def run(samples: np.ndarray) -> np.ndarray:
        source = FrameInput()
        array = np.repeat(samples, 2).reshape(1, -1) if layout == "stereo" else samples.reshape(1, -1)
        outs = []
        for i in range(3):
            frame = av.AudioFrame.from_ndarray(array.astype(dtype), format=fmt, layout=layout)
            frame.sample_rate, frame.pts = 48000, i * 960
            outs.append(source.push(frame))
        return np.concatenate(outs)

    out = run(poisoned(960))
    assert_clean(out)
    # Past the bad samples the output is what clean input gives: the resampler never saw a NaN.
    np.testing.assert_allclose(out[-200:], run(np.full(960, 0.25, np.float32))[-200:], atol=1e-6)


def test_the_speech_queue_cleans_whatever_it_is_given() -> None:
    """The last line of defence, for audio that came by no input above (TTS, code)."""
    queue = SpeechQueue()
    queue.say("test", poisoned(600).astype(np.float64))
    streamed = queue.begin("ws")
    queue.append(streamed, poisoned(2000, -0.5))
    queue.end(streamed)
    queue.push_live(poisoned(533, 0.0))
    taken = [queue.take(533)[0] for _ in range(6)]
    for audio in taken:
        assert_clean(audio)
    np.testing.assert_allclose(taken[0][100:], 0.25)


def test_clean_audio_passes_clean_chunks_through_without_copying() -> None:
    from facecast.stream.audio_input import clean_audio

    clean = np.linspace(-1, 1, 1000, dtype=np.float32)
    assert clean_audio(clean) is clean
    dirty = poisoned(100)
    fixed = clean_audio(dirty)
    assert fixed is not dirty and np.isnan(dirty[10])  # the caller's array is left as it was
