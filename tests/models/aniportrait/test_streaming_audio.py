"""Streaming Audio2Mesh on fixture A's tiny weights: timing of frames, chunk independence, interrupt, bench."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facecast.bench.aniportrait_audio_stream import motion_deviation
from facecast.frames import frame_start_sample
from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio_weights import (
    load_audio2mesh,
    load_audio2pose,
    resolve_audio_weights,
)
from facecast.models.aniportrait.networks.checkpoint import WeightsError
from facecast.models.aniportrait.networks.wav2vec import frame_count, normalize_waveform
from facecast.models.aniportrait.streaming.audio import StreamingAudio2Mesh, StreamingAudio2Pose
from facecast.models.audio.decode import decode_audio


@pytest.fixture(scope="module")
def model(fixture_a: Path) -> Audio2Mesh:
    return load_audio2mesh(fixture_a)


@pytest.fixture(scope="module")
def speech(fixture_a: Path) -> np.ndarray:
    return decode_audio(fixture_a / "audio" / "speech.wav")


def stream_all(stream: StreamingAudio2Mesh, audio: np.ndarray, chunks: list[int]) -> np.ndarray:
    frames, i = [], 0
    for n in chunks:
        frames += stream.push(audio[i : i + n])
        i += n
    frames += stream.push(audio[i:]) + stream.flush()
    assert [f.index for f in frames] == list(range(len(frames)))
    return np.stack([f.mesh_offsets for f in frames])


def test_weights_layouts(fixture_a: Path, tmp_path: Path) -> None:
    assert resolve_audio_weights(fixture_a) == (
        fixture_a / "pretrained_model",
        fixture_a / "configs" / "inference_audio.json",
    )
    assert (
        resolve_audio_weights(fixture_a / "pretrained_model")[1]
        == fixture_a / "configs" / "inference_audio.json"
    )
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_audio_weights(tmp_path / "nope")
    with pytest.raises(WeightsError, match="does not exist"):
        load_audio2mesh(tmp_path)


def test_frame_k_comes_out_when_its_lookahead_has_arrived(model: Audio2Mesh, speech: np.ndarray) -> None:
    stream = StreamingAudio2Mesh(model, lookahead_s=0.2, left_context_s=0.5)
    assert stream.lookahead_frames == 6 and stream.left_frames == 15
    emitted, fed = 0, 0
    for n in range(1, 6000, 97):  # sample counts that cut frames anywhere
        stream.push(speech[fed:n])
        fed = n
        while frame_start_sample(emitted + 1 + 6, 30) <= n:
            emitted += 1
        assert stream.next_index == emitted


def test_output_does_not_depend_on_chunking(model: Audio2Mesh, speech: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    one = stream_all(StreamingAudio2Mesh(model), speech, [])
    random = stream_all(StreamingAudio2Mesh(model), speech, list(rng.integers(1, 2500, size=12)))
    per_frame = stream_all(StreamingAudio2Mesh(model), speech, [533, 533, 534] * 17)
    assert one.shape == (frame_count(speech.size), 468, 3)
    np.testing.assert_allclose(random, one, atol=1e-5)
    np.testing.assert_allclose(per_frame, one, atol=1e-5)


def test_more_lookahead_is_closer_to_the_whole_clip(model: Audio2Mesh, speech: np.ndarray) -> None:
    whole = model.infer(speech)
    streamed = [stream_all(StreamingAudio2Mesh(model, lookahead_s=la), speech, []) for la in (0.0, 0.2, 0.4)]
    errors = [motion_deviation(s, whole)["rel_mean"] for s in streamed]
    assert errors[0] > errors[1] > errors[2] > 0
    # a window holding the whole clip and all of its look-ahead reproduces the last frame exactly
    long = StreamingAudio2Mesh(model, lookahead_s=0.0, left_context_s=10.0)
    n = frame_start_sample(frame_count(speech.size), 30)
    clip = speech[:n]
    last = stream_all(long, clip, [])[-1]
    np.testing.assert_allclose(last, model.infer(clip)[-1], atol=1e-3)  # running vs clip stats: eps only


def test_interrupt_silences_audio_not_yet_turned_into_frames(model: Audio2Mesh, speech: np.ndarray) -> None:
    cut = 16000 // 2
    a = StreamingAudio2Mesh(model)
    first = a.push(speech[:cut])
    a.interrupt()
    rest = a.push(np.zeros(8000, np.float32))
    silenced = speech[:cut].copy()
    silenced[frame_start_sample(len(first), 30) :] = 0.0
    b = StreamingAudio2Mesh(model)
    expect = b.push(np.concatenate([silenced, np.zeros(8000, np.float32)]))
    got = np.stack([f.mesh_offsets for f in rest])  # frames already out saw the speech in their look-ahead
    np.testing.assert_allclose(got, np.stack([f.mesh_offsets for f in expect[len(first) :]]), atol=1e-3)
    assert rest[-1].speech == 0.0 and max(f.speech for f in first) > 0.5


def test_blocks_share_one_window_and_keep_their_timing(model: Audio2Mesh, speech: np.ndarray) -> None:
    calls: list[int] = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    try:
        per_frame = stream_all(StreamingAudio2Mesh(model, left_context_s=10.0), speech, [533] * 60)
        frame_calls, calls[:] = len(calls), []
        stream = StreamingAudio2Mesh(model, left_context_s=10.0, block_frames=8)
        fed = 0
        for n in range(400, speech.size, 400):
            stream.push(speech[fed:n])
            fed = n
            ready = sum(frame_start_sample(k + 1 + 6, 30) <= n for k in range(60))  # look-ahead is in
            assert stream.next_index == ready // 8 * 8  # whole blocks only
        block_calls = len(calls)
    finally:
        hook.remove()
    assert block_calls * 6 < frame_calls
    blocks = stream_all(StreamingAudio2Mesh(model, left_context_s=10.0, block_frames=8), speech, [1000] * 20)
    random = stream_all(StreamingAudio2Mesh(model, left_context_s=10.0, block_frames=8), speech, [777] * 25)
    np.testing.assert_allclose(random, blocks, atol=1e-5)
    # the last frame of a block sees exactly what the per-frame window sees (both start at 0 here)
    np.testing.assert_allclose(blocks[7::8], per_frame[7::8], atol=1e-4)


def test_silence_and_bad_settings(model: Audio2Mesh) -> None:
    frames = StreamingAudio2Mesh(model).push(np.zeros(16000, np.float32))
    assert len(frames) == 30 - 6 and all(f.speech == 0.0 for f in frames)
    assert all(np.isfinite(f.mesh_offsets).all() for f in frames)
    with pytest.raises(ValueError, match="30 fps"):
        StreamingAudio2Mesh(model, fps=25)
    with pytest.raises(ValueError, match="normalization"):
        StreamingAudio2Mesh(model, normalization="global")


def test_bench_prints_json(fixture_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facecast.bench import aniportrait_audio_stream

    parser = argparse.ArgumentParser()
    aniportrait_audio_stream.register(parser.add_subparsers())
    args = parser.parse_args(
        ["audio2mesh-stream", "--weights", str(fixture_a), "--lookahead", "0.1", "0.4", "--device", "cpu"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert set(figures["rel_mean_by_lookahead"]) == {"0.1", "0.4"} and figures["random_fixture_weights"]
    assert [r["frames"] for r in figures["results"]] == [52, 52]


def test_incremental_audio2pose_is_the_cached_decode_one_step_at_a_time(
    fixture_a: Path, speech: np.ndarray
) -> None:
    pose_model = load_audio2pose(fixture_a)
    x = torch.from_numpy(normalize_waveform(speech))[None]
    with torch.no_grad():
        memory = pose_model.in_fn(pose_model.audio_encoder(x, frame_count(speech.size)))
        whole = pose_model.decode(memory, 7)[0].numpy()
        second_chunk = pose_model.decode(memory[:, 20:40], 7)[0].numpy()
    stream = StreamingAudio2Pose(pose_model, style_id=7, chunk_frames=20)
    raw = np.stack([stream.step(v) for v in memory[0].numpy()])
    np.testing.assert_allclose(raw[:20], whole[:20], atol=1e-5)
    np.testing.assert_allclose(raw[20:40], second_chunk, atol=1e-5)  # a new chunk starts from a zero pose
    live = StreamingAudio2Pose(pose_model, style_id=7)
    poses = [p for i in range(0, speech.size, 700) for p in live.push(speech[i : i + 700])] + live.flush()
    assert [k for k, _ in poses] == list(range(frame_count(speech.size)))
    assert all(p.shape == (6,) and np.isfinite(p).all() for _, p in poses)
    with pytest.raises(ValueError, match="style_id"):
        StreamingAudio2Pose(pose_model, style_id=100)
