"""decode_audio: limits before work (a tiny FLAC can hold half an hour), and finite samples out."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest

from facecast.models.audio.decode import MAX_AUDIO_SECONDS, AudioError, decode_audio


class _Pipe:
    """A write-only sink: the FLAC muxer cannot seek back to write the length into the header."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def silent_flac(seconds: float, *, seekable: bool = True) -> bytes:
    """FLAC of silence at 16 kHz in 64k-sample frames: about 8 bytes per second."""
    sink: io.BytesIO | _Pipe = io.BytesIO() if seekable else _Pipe()
    with av.open(sink, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000, layout="mono")
        stream.codec_context.options = {"frame_size": "65535"}
        block = np.zeros((1, 16000 * 10), np.int16)
        for start in range(0, int(seconds * 16000), block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return sink.getvalue() if isinstance(sink, io.BytesIO) else bytes(sink.data)


def float_wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def _peak_rss_kb() -> int:
    match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    assert match
    return int(match.group(1))


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """The process's peak RSS growth (kB) over the block, appended to the list it yields (Linux)."""
    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists():
        pytest.skip("needs Linux /proc to reset the peak RSS")
    clear_refs.write_text("5")  # the peak RSS restarts from the current RSS
    before = _peak_rss_kb()
    growth: list[int] = []
    yield growth
    growth.append(_peak_rss_kb() - before)


def test_nan_inf_and_huge_samples_decode_to_finite_audio_in_range() -> None:
    samples = np.full(1600, 0.25, np.float32)
    samples[[10, 20, 30, 40]] = [np.nan, np.inf, -np.inf, 1e30]
    audio = decode_audio(float_wav(samples))
    assert audio.dtype == np.float32 and audio.size == 1600
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert audio[[10, 20, 30]].tolist() == [0.0, 0.0, 0.0] and audio[40] == 1.0
    np.testing.assert_allclose(audio[100:200], 0.25)


def test_a_long_flac_is_refused_from_its_header_before_decoding() -> None:
    data = silent_flac(29 * 60)  # longer than a session's speech queue holds: the upload route's limit
    assert len(data) < 50_000
    with peak_rss_growth() as growth, pytest.raises(AudioError) as refused:
        decode_audio(data, max_seconds=600)
    assert str(refused.value) == "the audio data is longer than the 10 minute limit"
    assert growth[0] < 20_000  # decoding the first 10 minutes would hold 38 MB of samples


def test_refusing_a_long_flac_costs_no_memory() -> None:
    data = silent_flac(MAX_AUDIO_SECONDS + 60)
    with peak_rss_growth() as growth, pytest.raises(AudioError, match="longer than the 30 minute limit"):
        decode_audio(data)
    # Decoding up to the limit first (as before the header check) held 30 min x 16 kHz x 4 bytes = 115 MB.
    assert growth[0] < 20_000


def test_a_stream_without_a_length_stops_decoding_at_the_limit() -> None:
    data = silent_flac(10 * 60, seekable=False)
    with av.open(io.BytesIO(data)) as container:  # the header states no length
        assert not container.streams.audio[0].duration and not container.duration
    with peak_rss_growth() as growth, pytest.raises(AudioError, match="longer than the 1 minute limit"):
        decode_audio(data, max_seconds=60)
    # All 10 minutes would be 38 MB of samples; stopping at the limit holds about 4 MB.
    assert growth[0] < 20_000
