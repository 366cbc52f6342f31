"""Audio2Mesh and Audio2Pose against fixture A (docs/aniportrait.md §7.4), plus chunking and post-processing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import (
    CHUNK_FRAMES,
    Audio2Pose,
    alibi_slopes,
    causal_alibi_mask,
    chunk_bounds,
    diagonal_memory_mask,
    postprocess_pose,
    smooth_poses,
)
from facecast.models.aniportrait.networks.wav2vec import (
    frame_count,
    min_samples,
    normalize_waveform,
    wav2vec2_config,
)

TOL = 1e-5  # docs/aniportrait.md §7.7: ~1e-5 on audio outputs; thread-count noise floor ~3e-7


@pytest.fixture(scope="module")
def audio_fixture(fixture_a: Path) -> dict[str, np.ndarray]:
    with np.load(fixture_a / "audio" / "audio_fixture.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def a2m(fixture_a: Path) -> Audio2Mesh:
    return Audio2Mesh.from_folder(
        fixture_a / "pretrained_model", inference_config=fixture_a / "configs" / "inference_audio.json"
    )


@pytest.fixture(scope="module")
def a2p(fixture_a: Path) -> Audio2Pose:
    return Audio2Pose.from_folder(
        fixture_a / "pretrained_model", inference_config=fixture_a / "configs" / "inference_audio.json"
    )


def test_front_end_matches_feature_extractor(audio_fixture: dict[str, np.ndarray]) -> None:
    values = normalize_waveform(audio_fixture["waveform_16k"])
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, audio_fixture["input_values"])
    assert frame_count(values.size) == int(audio_fixture["seq_len"]) == 52
    assert frame_count(80000) == 150 and frame_count(80001) == 151


def test_audio2mesh_stages(a2m: Audio2Mesh, audio_fixture: dict[str, np.ndarray]) -> None:
    values = torch.from_numpy(audio_fixture["input_values"])[None]
    with torch.no_grad():
        stages, out = a2m.forward_stages(values, int(audio_fixture["seq_len"]))
    expected = {
        "a2m_conv_features": stages.conv_features,
        "a2m_interp_features": stages.interpolated,
        "a2m_projected_features": stages.projected,
        "a2m_last_hidden_state": stages.last_hidden_state,
        "a2m_output": out,
    }
    for key, actual in expected.items():
        np.testing.assert_allclose(actual.numpy(), audio_fixture[key], atol=TOL, rtol=0, err_msg=key)


def test_audio2mesh_infer_from_waveform(a2m: Audio2Mesh, audio_fixture: dict[str, np.ndarray]) -> None:
    offsets = a2m.infer(audio_fixture["waveform_16k"])
    assert offsets.shape == (52, 468, 3) and offsets.dtype == np.float32
    np.testing.assert_allclose(offsets.reshape(1, 52, -1), audio_fixture["a2m_output"], atol=TOL, rtol=0)


def test_audio2pose_raw_and_postprocessed(a2p: Audio2Pose, audio_fixture: dict[str, np.ndarray]) -> None:
    raw = a2p.infer(audio_fixture["waveform_16k"], int(audio_fixture["a2p_id_seed"]))
    assert raw.shape == (52, 6) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, audio_fixture["a2p_output_raw"][0], atol=TOL, rtol=0)
    np.testing.assert_allclose(postprocess_pose(raw), audio_fixture["a2p_pose_smoothed"], atol=TOL, rtol=0)
    # The style id matters (docs/aniportrait.md §7.7: id 18 moves the output by 0.32).
    other = a2p.infer(audio_fixture["waveform_16k"], 18)
    assert np.abs(other - raw).max() > 0.1


def test_postprocess_is_exact_on_fixture_values(audio_fixture: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(
        postprocess_pose(audio_fixture["a2p_output_raw"][0]), audio_fixture["a2p_pose_smoothed"]
    )
    ramp = np.arange(10, dtype=np.float32)[:, None]
    smoothed = smooth_poses(ramp)
    assert smoothed[0, 0] == pytest.approx(1.5)  # window [0, 3]
    assert smoothed[5, 0] == pytest.approx(5.0)  # full window [2, 8]
    with pytest.raises(ValueError, match=r"\(T, 6\)"):
        postprocess_pose(np.zeros((4, 3)))


def test_masks_and_position_encoding(a2p: Audio2Pose) -> None:
    np.testing.assert_allclose(alibi_slopes(8).numpy(), [2.0**-k for k in range(1, 9)])
    mask = causal_alibi_mask(4, 8)
    assert mask.shape == (8, 4, 4)
    assert torch.isinf(mask[:, 0, 1:]).all() and mask[0, 3, 0] == -1.5 and mask[7, 2, 2] == 0
    memory = diagonal_memory_mask(3, 3)
    assert memory.tolist() == [[False, True, True], [True, False, True], [True, True, False]]
    # The recomputed sinusoid equals the buffer stored in the checkpoint.
    rebuilt = type(a2p.PPE)(a2p.PPE.pe.shape[-1])
    torch.testing.assert_close(rebuilt.pe, a2p.PPE.pe, atol=1e-6, rtol=0)


def test_chunk_bounds_cover_every_length() -> None:
    assert chunk_bounds(27651) == [(0, 27651, 52)]  # < 5 s: upstream crashes (issue 137)
    # 10 s, a multiple of 5 s: upstream breaks (issue 200)
    assert chunk_bounds(160000) == [(0, 80000, 150), (80000, 160000, 150)]
    assert chunk_bounds(193557) == [(0, 80000, 150), (80000, 193557, 213)]  # remainder joins the last chunk
    for n in (400, 79999, 80000, 80001, 239999, 240000, 1_000_003):
        bounds = chunk_bounds(n)
        assert sum(frames for *_, frames in bounds) == frame_count(n)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_cached_decoder_equals_upstream_full_prefix_rerun(a2p: Audio2Pose) -> None:
    memory = torch.randn(1, 12, a2p.in_fn.out_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cached = a2p.decode(memory, 7)
        rerun = a2p.decode_full_prefix(memory, 7)
    torch.testing.assert_close(cached, rerun, atol=2e-6, rtol=0)


def test_audio2pose_decodes_each_chunk_from_a_zero_pose(fixture_a: Path) -> None:
    # One decoder layer keeps this 300-frame (10 s, two-chunk) run fast; chunking does not depend on depth.
    torch.manual_seed(0)
    model = Audio2Pose(
        wav2vec2_config(fixture_a / "pretrained_model" / "wav2vec2-base-960h"), 16, num_layers=1
    ).eval()
    wave = (np.random.default_rng(0).standard_normal(160000) * 0.1).astype(np.float32)
    raw = model.infer(wave, 5)
    assert raw.shape == (300, 6) and np.isfinite(raw).all()
    values = torch.from_numpy(normalize_waveform(wave))[None]  # normalised over the whole clip
    with torch.no_grad():
        second = model(values[:, 80000:], CHUNK_FRAMES, 5)[0].numpy()
    np.testing.assert_allclose(raw[CHUNK_FRAMES:], second, atol=1e-6, rtol=0)


def test_short_or_bad_audio_is_rejected(a2m: Audio2Mesh, a2p: Audio2Pose) -> None:
    need = min_samples(a2m.audio_encoder.config)
    assert need == 400  # base-960h layout receptive field
    assert a2m.infer(np.ones(need, np.float32) * np.arange(need)).shape == (frame_count(need), 468, 3)
    with pytest.raises(ValueError, match="too short"):
        a2m.infer(np.zeros(need - 1, np.float32))
    with pytest.raises(ValueError, match="mono"):
        a2p.infer(np.zeros((2, 1000), np.float32), 0)
    with pytest.raises(ValueError, match="style_id"):
        a2p.infer(np.random.default_rng(1).standard_normal(1600).astype(np.float32), 100)
