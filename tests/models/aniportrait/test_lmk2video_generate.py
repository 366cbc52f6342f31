"""generate_video: the rendering API on fixture A's tiny weights (CPU fp32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facecast.models.aniportrait.pipeline.generate import generate_video, pick_device


@pytest.fixture(scope="module")
def inputs(fixture_a: Path) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(Image.open(fixture_a / "inputs" / "ref_image.png").convert("RGB"))
    poses = np.load(fixture_a / "inputs" / "pose_images.npz")["pose_images"]
    return ref, poses


@pytest.fixture(scope="module")
def pipe(fixture_a: Path) -> Any:
    """Fixture A's Lmk2Video pipeline on the CPU in fp32."""
    import torch

    from facecast.models.aniportrait.pipeline.generate import load_pipeline

    return load_pipeline(fixture_a, torch.device("cpu"), torch.float32)


def test_generate_video_tiny(fixture_a: Path, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    ref, poses = inputs
    calls: list[tuple[int, int]] = []
    kwargs = {"weights": fixture_a / "pretrained_model", "steps": 2, "seed": 7, "device": "cpu"}
    video = generate_video(ref, poses[:4], progress=lambda i, n: calls.append((i, n)), **kwargs)
    assert video.shape == (4, 128, 128, 3) and video.dtype == np.uint8
    assert calls == [(1, 2), (2, 2)]
    assert video.std() > 5  # random weights: noise-like, but not a constant frame
    again = generate_video(ref, poses[:4], **kwargs)
    np.testing.assert_array_equal(video, again)
    other_seed = generate_video(ref, poses[:4], **{**kwargs, "seed": 8})
    assert np.abs(other_seed.astype(int) - video).max() > 0


def test_generate_video_rejects_bad_input(fixture_a: Path, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    ref, poses = inputs
    with pytest.raises(ValueError, match="multiple of 8"):
        generate_video(ref, poses[:2, :100, :100], weights=fixture_a)
    with pytest.raises(ValueError, match="uint8"):
        generate_video(ref.astype(np.float32), poses[:2], weights=fixture_a)


def test_pick_device_defaults() -> None:
    device, dtype = pick_device("cpu", None)
    assert (device.type, str(dtype)) == ("cpu", "torch.float32")
    with pytest.raises(ValueError):
        pick_device("cpu", "int8")


def test_no_cfg_window_summing_only_in_exact_mode(pipe: Any, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    ref, poses = inputs
    noise = torch.randn((1, 4, 20, 16, 16), generator=torch.Generator().manual_seed(0))
    traces = {}
    for exact in (True, False):
        trace: dict[str, torch.Tensor] = {}
        pipe(Image.fromarray(ref), poses[:20], num_inference_steps=1, guidance_scale=1.0, latents=noise,
             exact=exact, trace=trace, decode=False)  # fmt: skip
        traces[exact] = trace["step0_v_pred_guided"]
    # windows 0..15 and 12..19,0..7: frames 0..7 and 12..15 are covered twice
    twice = [*range(8), 12, 13, 14, 15]
    once = [8, 9, 10, 11, 16, 17, 18, 19]
    torch.testing.assert_close(
        traces[True][:, :, twice], 2 * traces[False][:, :, twice], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(traces[True][:, :, once], traces[False][:, :, once], rtol=1e-5, atol=1e-5)


def test_upstream_schedule_redoes_discarded_work_with_the_same_result(
    pipe: Any, inputs: tuple[np.ndarray, np.ndarray]
) -> None:
    """The cost baseline of `bench stream`: PoseGuider every step, reference attention on every CFG row."""
    import torch

    ref, poses = inputs
    noise = torch.randn((1, 4, 20, 16, 16), generator=torch.Generator().manual_seed(0))
    pose_calls: list[int] = []
    hook = pipe.pose_guider.register_forward_hook(lambda *_: pose_calls.append(1))
    results = {}
    try:
        for upstream in (False, True):
            pose_calls.clear()
            results[upstream], _ = pipe(Image.fromarray(ref), poses[:20], num_inference_steps=3,
                                        guidance_scale=3.5, latents=noise, upstream_schedule=upstream,
                                        decode=False)  # fmt: skip
            assert len(pose_calls) == (2 * 3 if upstream else 2)  # 2 windows, 3 steps
    finally:
        hook.remove()
    torch.testing.assert_close(results[True], results[False], rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_generate_video_cuda_fp16(fixture_a: Path, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ref, poses = inputs
    video = generate_video(ref, poses[:4], weights=fixture_a, steps=2, device="cuda", dtype="fp16")
    cpu = generate_video(ref, poses[:4], weights=fixture_a, steps=2, device="cpu")
    assert video.shape == cpu.shape and video.dtype == np.uint8
    assert np.abs(video.astype(int) - cpu).mean() < 8  # fp16 rounding only
