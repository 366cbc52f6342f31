"""Streaming Lmk2Video on fixture A's tiny weights at 64x64 (CPU fp32): contract, batching, cache, seams."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from facecast.models.aniportrait.conformance.seams import ar1_noise, measure_seams, seam_ratio
from facecast.models.aniportrait.streaming.lmk2video import StreamingLmk2Video, seeded_noise_field

SIZE = 64


@pytest.fixture(scope="module")
def engine(fixture_a: Path) -> Iterator[StreamingLmk2Video]:
    torch.set_num_threads(1)  # the worker thread inherits the process-wide setting
    eng = StreamingLmk2Video(fixture_a, width=SIZE, height=SIZE, device="cpu", seed=3)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def ref(fixture_a: Path) -> np.ndarray:
    return np.asarray(Image.open(fixture_a / "inputs" / "ref_image.png").convert("RGB").resize((SIZE, SIZE)))


@pytest.fixture(scope="module")
def poses(fixture_a: Path) -> np.ndarray:
    """36 pose images (the fixture's 24, then its first 12 again), 64x64."""
    images = np.load(fixture_a / "inputs" / "pose_images.npz")["pose_images"]
    small = np.stack([cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for p in images])
    return np.concatenate([small, small[:12]])


def _run(stream: object, poses: np.ndarray) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for pose in poses:
        out.update(stream.push(pose))  # type: ignore[attr-defined]
    out.update(stream.flush())  # type: ignore[attr-defined]
    return out


def test_contract_indices_latency_and_evals(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray
) -> None:
    stream = engine.open_stream(ref, avatar_key="astronaut")
    assert engine.window == 16 and stream.latency_frames == engine.hop == 12
    evals_before = engine.unet_evals()
    emitted: list[int] = []
    for pushed, pose in enumerate(poses[:29], start=1):
        for index, frame in stream.push(pose):
            assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
            assert pushed <= index + stream.latency_frames  # frame k is out once pose k + latency - 1 is in
            emitted.append(index)
        # every frame k with k + latency_frames <= pushed is out
        assert len(emitted) >= pushed - stream.latency_frames + 1 or pushed < stream.latency_frames
    assert emitted == list(range(24))
    tail = stream.flush()
    assert [k for k, _ in tail] == list(range(24, 29))
    # windows: 12 new frames; then 4 history + 12 new; then 4 + 5 (flush); 4 steps each, cond only
    assert engine.unet_evals() - evals_before == 4 * (12 + 16 + 9)
    assert stream.flush() == []
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.push(poses[0])


def test_bad_input_is_rejected(engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray) -> None:
    stream = engine.open_stream(ref, avatar_key="astronaut")
    with pytest.raises(ValueError, match="pose image"):
        stream.push(poses[0, :32])
    with pytest.raises(ValueError, match="uint8"):
        engine.open_stream(ref.astype(np.float32), avatar_key="float")
    stream.close()


def test_reset_drops_pending_and_continues(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray
) -> None:
    interrupted = engine.open_stream(ref, avatar_key="astronaut", seed=5)
    first = {k: f for p in poses[:12] for k, f in interrupted.push(p)}
    for pose in poses[12:17]:
        assert interrupted.push(pose) == []
    interrupted.reset()  # poses 12..16 never computed
    second = _run(interrupted, poses[17:29])
    assert sorted(first) == list(range(12)) and sorted(second) == list(range(12, 24))
    # the same as a stream that never saw the dropped poses: history and noise continue by frame index
    plain = engine.open_stream(ref, avatar_key="astronaut", seed=5)
    reference = _run(plain, np.concatenate([poses[:12], poses[17:29]]))
    for k in range(24):
        np.testing.assert_array_equal((first | second)[k], reference[k])


def test_same_frame_same_noise() -> None:
    field = seeded_noise_field(11, (2, 3))
    torch.testing.assert_close(field(3, 7)[:, 1:], field(4, 9)[:, :3], rtol=0, atol=0)
    assert not torch.equal(field(0, 1), seeded_noise_field(12, (2, 3))(0, 1))


def test_avatar_cache_and_precomputed_kv(engine: StreamingLmk2Video, ref: np.ndarray) -> None:
    hits, misses = engine.avatars.hits, engine.avatars.misses
    state = engine.avatar_state(ref, "cache-test")
    # a key seen before is not recomputed (nor its image looked at)
    assert engine.avatar_state(np.zeros_like(ref), "cache-test") is state
    assert (engine.avatars.hits, engine.avatars.misses) == (hits + 1, misses + 1)
    # the precomputed reference K/V give the same UNet output as attending to the bank itself
    pipe = engine.pipe
    bank = engine.worker.call(
        lambda: pipe.build_reference_bank(state.ref_latents, state.clip_embeds, exact=False, cfg=False)
    )
    assert len(state.ref_kv) == len(bank) > 0
    window = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (4, SIZE, SIZE, 3), dtype=np.uint8))
    latents = torch.randn((1, 4, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(0))
    states, rows, t = state.clip_embeds.unsqueeze(1), torch.tensor([True]), torch.tensor(749)

    def both() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            features = pipe.pose_features(window, 1)
            pipe.reference.bank = bank
            with_bank = pipe.denoise_window(latents, t, states, features, rows)
            pipe.reference.bank = {}
            with_kv = pipe.denoise_window(latents, t, states, features, rows, reference_kv=state.ref_kv)
            without = pipe.denoise_window(latents, t, states, features, rows)
        return with_bank, with_kv, without

    with_bank, with_kv, without = engine.worker.call(both)
    torch.testing.assert_close(with_kv, with_bank, rtol=1e-4, atol=1e-5)
    assert (with_kv - without).abs().max() > 1e-3  # the reference really is attended to


def test_two_streams_batched_match_alone(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray
) -> None:
    other_ref = np.ascontiguousarray(ref[:, ::-1])
    alone = {
        "a": _run(engine.open_stream(ref, avatar_key="astronaut", seed=1, keep_latents=False), poses[:24]),
        "b": _run(engine.open_stream(other_ref, avatar_key="mirrored", seed=2), poses[12:36]),
    }
    streams = {
        "a": engine.open_stream(ref, avatar_key="astronaut", seed=1),
        "b": engine.open_stream(other_ref, avatar_key="mirrored", seed=2),
    }
    inputs = {"a": poses[:24], "b": poses[12:36]}
    started, gate = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(60)

    blocker = threading.Thread(target=engine.worker.call, args=(hold,))
    blocker.start()  # hold the worker so that both streams' windows are queued together
    assert started.wait(30)
    batches_before = len(engine.worker.batch_sizes)
    results: dict[str, dict[int, np.ndarray]] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, _run(streams[n], inputs[n]))) for n in "ab"
    ]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # until both first windows are queued behind the blocking call
        if len(engine.worker._queue) >= 2:
            break
        threading.Event().wait(0.01)
    gate.set()
    for thread in [*threads, blocker]:
        thread.join(timeout=60)
    assert engine.worker.batch_sizes[batches_before] == 2  # one UNet batch for both streams' first windows
    for name in "ab":
        assert sorted(results[name]) == list(range(24))
        for k in range(24):
            diff = np.abs(results[name][k].astype(int) - alone[name][k].astype(int)).max()
            assert diff <= 1, (name, k, diff)  # float tolerance: batched vs single GEMMs


def test_seam_ratio_definition() -> None:
    latents = torch.zeros((4, 6, 2, 2))
    latents[:, 3:] = 1.0  # a jump between frames 2 and 3
    latents += torch.arange(6).view(1, 6, 1, 1) * 0.1
    assert seam_ratio(latents, [3]) == pytest.approx(11.0)
    noise = ar1_noise(400, (4, 4), rho=0.99, seed=0)
    assert abs(float(noise.std()) - 1.0) < 0.15
    assert float(torch.corrcoef(torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()]))[0, 1]) > 0.97


def test_seam_score_below_threshold(engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray) -> None:
    report = measure_seams(engine, ref, poses, seeds=(0,))
    # fresh noise per window makes big seams; the noise field + held history frames almost none
    assert report.seam_anchor_independent > 2.0 * report.seam_anchor_offline
    assert report.seam_score < 0.25, report


def test_tiny_autoencoder_decoding(
    fixture_a: Path, tmp_path: Path, ref: np.ndarray, poses: np.ndarray
) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8))
    tiny.save_pretrained(tmp_path / "taesd")
    eng = StreamingLmk2Video(
        fixture_a, width=SIZE, height=SIZE, hop=4, device="cpu", tiny_vae=tmp_path / "taesd"
    )
    try:
        frames = _run(eng.open_stream(ref, avatar_key="a"), poses[:6])
        assert sorted(frames) == list(range(6)) and frames[0].shape == (SIZE, SIZE, 3)
        assert eng.unet_evals() == 4 * (4 + 6)  # hop 4: 4 new; then 4 history + 2 new (flush)
    finally:
        eng.close()
    with pytest.raises(ValueError, match="not an AutoencoderTiny"):
        StreamingLmk2Video(fixture_a, width=SIZE, height=SIZE, device="cpu", tiny_vae=tmp_path / "nothing")


def test_compile_mode_is_checked_before_loading(fixture_a: Path) -> None:
    with pytest.raises(ValueError, match="compile mode must be one of"):
        StreamingLmk2Video(fixture_a, width=SIZE, height=SIZE, device="cpu", compile="fastest")


@pytest.mark.slow
def test_compiled_unet_streams_like_eager(
    engine: StreamingLmk2Video, fixture_a: Path, ref: np.ndarray, poses: np.ndarray
) -> None:
    """torch.compile (inductor on CPU, a few minutes) keeps module names and hooks: same frames as eager."""
    compiled = StreamingLmk2Video(fixture_a, width=SIZE, height=SIZE, device="cpu", seed=3, compile="default")
    try:
        got = _run(compiled.open_stream(ref, avatar_key="a", seed=5), poses[:16])
    finally:
        compiled.close()
    want = _run(engine.open_stream(ref, avatar_key="a", seed=5), poses[:16])
    assert sorted(got) == sorted(want) == list(range(16))
    for k in want:
        assert np.abs(got[k].astype(int) - want[k]).max() <= 2, k


@pytest.mark.gpu
def test_streaming_cuda_fp16(fixture_a: Path, ref: np.ndarray, poses: np.ndarray) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    eng = StreamingLmk2Video(fixture_a, width=SIZE, height=SIZE, device="cuda", dtype="fp16")
    try:
        frames = _run(eng.open_stream(ref, avatar_key="a"), poses[:24])
        assert sorted(frames) == list(range(24))
        assert all(f.std() > 1 for f in frames.values())
    finally:
        eng.close()


def test_reset_cancels_a_queued_window_and_slow_streams_stall_nobody(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray
) -> None:
    slow = engine.open_stream(ref, avatar_key="astronaut", seed=7)
    for pose in poses[:5]:  # an incomplete window: nothing is queued for it
        assert slow.push(pose) == []
    fast = engine.open_stream(ref, avatar_key="astronaut", seed=8)
    assert sorted(_run(fast, poses[:12])) == list(range(12))  # not held up by the slow stream
    # a window still queued when reset comes is dropped; its push returns nothing
    started, gate = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(60)

    blocker = threading.Thread(target=engine.worker.call, args=(hold,))
    blocker.start()
    assert started.wait(30)
    returned: list[list[tuple[int, np.ndarray]]] = []
    for pose in poses[5:11]:
        assert slow.push(pose) == []  # 11 poses pending, the next completes a window
    pusher = threading.Thread(target=lambda: returned.append(slow.push(poses[11])))
    pusher.start()
    for _ in range(3000):
        if len(engine.worker._queue) >= 1:
            break
        threading.Event().wait(0.01)
    slow.reset()
    gate.set()
    pusher.join(timeout=60)
    blocker.join(timeout=60)
    assert returned == [[]]
    assert sorted(_run(slow, poses[12:24])) == list(
        range(12)
    )  # numbering continues from the last frame computed


def test_optional_guidance_counts_both_branches(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray
) -> None:
    plain = _run(engine.open_stream(ref, avatar_key="astronaut", seed=9), poses[:12])
    engine.sampler.guidance = 2.5
    try:
        before = engine.unet_evals()
        guided = _run(engine.open_stream(ref, avatar_key="astronaut", seed=9), poses[:12])
        assert engine.unet_evals() - before == 2 * 4 * 12  # uncond + cond rows, 4 steps, one 12-frame window
    finally:
        engine.sampler.guidance = 1.0
    assert sorted(guided) == list(range(12))
    assert max(np.abs(guided[k].astype(int) - plain[k].astype(int)).max() for k in range(12)) > 0


def test_gpu_projection_follows_facts_figures() -> None:
    from facecast.models.aniportrait.conformance.cost import gpu_projection, latency_model, window_tflop

    # 4 steps x 20 TFLOP (16 frames, no CFG) + PoseGuider 1.9 (16 frames) + 12 KL decodes x 2.5
    assert window_tflop(4, 12) == pytest.approx(80 + 1.9 + 30)
    projection = gpu_projection(steps=4, hop=12)
    assert projection["measured"] is False
    assert projection["kl_vae"]["fps_1_session"] > projection["kl_vae"]["fps_per_session_4_sessions"]
    rows = latency_model({4: 0.5, 12: 0.5}, lookahead_s=0.2)
    assert [r["hop"] for r in rows] == [4, 12]
    assert rows[1]["total_cpu_s"] == pytest.approx(0.2 + 12 / 30 + 0.5)
