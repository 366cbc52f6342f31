"""20 ms audio chunks at 48 kHz from the session's per-frame 16 kHz audio: stamps, content, Opus, gaps."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from facecast.frames import frame_samples
from facecast.outputs.audio_packets import PACKET_SAMPLES, AudioPacketizer, pts_of


def pcm16(speech: np.ndarray) -> np.ndarray:
    return (np.clip(speech, -1, 1) * 32767).astype(np.int16)


def cut(packetizer: AudioPacketizer, pcm: np.ndarray, frames: range, fps: int = 30) -> list[av.AudioFrame]:
    chunks: list[av.AudioFrame] = []
    for k in frames:
        lo, hi = frame_samples(k, fps)
        chunks += packetizer.push(pcm[lo:hi], lo)
    return chunks


def test_chunks_are_contiguous_20ms_and_carry_the_frames_samples(speech: np.ndarray) -> None:
    pcm = pcm16(speech)
    chunks = cut(AudioPacketizer(opus=False), pcm, range(60))
    starts = [pts_of(c) for c in chunks]
    assert starts == [PACKET_SAMPLES * i for i in range(len(chunks))]
    assert all(
        c.samples == 960 and c.sample_rate == 48000 and c.time_base == Fraction(1, 48000) for c in chunks
    )
    assert len(chunks) == 99  # 2 s of audio, the last partial 20 ms still pending
    # 3x upsampling keeps the input samples: every third 48 kHz sample is the 16 kHz sample, in place.
    out = np.concatenate([c.to_ndarray().reshape(-1) for c in chunks])
    assert np.abs(out[::3].astype(int) - pcm[: out.size // 3].astype(int)).max() <= 1


def test_opus_packets_one_per_chunk_and_decoded_audio_lands_on_its_media_time(speech: np.ndarray) -> None:
    pcm = pcm16(speech[16000:])  # from inside the speech: a lag would show
    packetizer = AudioPacketizer(opus=True)
    chunks = cut(packetizer, pcm, range(90))
    packets = [packetizer.encode(c) for c in chunks]
    assert all(isinstance(p, av.Packet) for p in packets)
    # Stamped with the chunk's time less Opus's pre-skip: what the decoder puts out starts that early.
    assert [p.pts for p in packets] == [pts_of(c) - 312 for c in chunks]
    decoder = av.CodecContext.create("libopus", "r")
    frames = [f for p in packets for f in decoder.decode(p)]  # type: ignore[union-attr]
    decoded = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames])  # stereo, interleaved
    start = 312 + 4800  # decoded[i] is media sample i - 312; compare 100 ms on
    heard = decoded[start : start + 48000].astype(np.float64)
    made = np.concatenate([c.to_ndarray().reshape(-1) for c in chunks])[4800 : 4800 + 48000].astype(
        np.float64
    )

    def corr(lag: int) -> float:
        return float(np.corrcoef(heard, np.roll(made, lag))[0, 1])

    best: int = max(range(-40, 41), key=corr)
    assert abs(best) <= 5  # within 0.1 ms (unstamped, it would be 312 samples late)
    assert corr(0) > 0.8


def test_a_gap_pads_the_open_chunk_and_restarts_on_the_new_timeline(speech: np.ndarray) -> None:
    pcm = pcm16(speech)
    packetizer = AudioPacketizer(opus=False)
    before = cut(packetizer, pcm, range(10))
    after = cut(packetizer, pcm, range(15, 30))  # frames 10..14 never reached this viewer
    padded, resumed = after[0], after[1]
    assert pts_of(padded) == pts_of(before[-1]) + PACKET_SAMPLES  # the open chunk, closed with silence
    assert not padded.to_ndarray()[0, -200:].any()
    assert pts_of(resumed) == 3 * frame_samples(15, 30)[0]
    assert [pts_of(c) - pts_of(resumed) for c in after[1:]] == [960 * i for i in range(len(after) - 1)]


def test_muted_span_is_silenced_and_only_it() -> None:
    packetizer = AudioPacketizer(opus=False)
    tone = np.full(16000, 8000, np.int16)
    chunk = cut(packetizer, tone, range(3))[0]
    quiet = packetizer.encode(chunk, mute=[(pts_of(chunk) + 480, pts_of(chunk) + 5000)])
    assert isinstance(quiet, av.AudioFrame)
    samples = quiet.to_ndarray()[0]
    assert not samples[480:].any() and samples[100:400].min() > 7000
    assert pts_of(quiet) == pts_of(chunk)
