"""Rendering API of the AniPortrait engine: reference photo + drawn pose images → video frames."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facecast.models.aniportrait.networks.weights import load_lmk2video
from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str, str], Lmk2VideoPipeline] = {}


def pick_device(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """cuda + fp16 when available, else CPU + fp32; explicit choices win."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        return dev, torch.float16 if dev.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    return dev, DTYPES[dtype]


def load_pipeline(weights: Path, device: torch.device, dtype: torch.dtype) -> Lmk2VideoPipeline:
    """The pipeline for a weights folder, loaded once per (folder, device, dtype) and kept."""
    key = (str(Path(weights).resolve()), str(device), str(dtype))
    with _cache_lock:
        pipe = _cache.get(key)
        if pipe is None:
            c = load_lmk2video(Path(weights), device=device, dtype=dtype)
            pipe = Lmk2VideoPipeline(
                c.arch, c.vae, c.image_encoder, c.reference_unet, c.denoising_unet, c.pose_guider, c.scheduler
            )
            _cache.clear()  # one engine at a time: these networks are GBs
            _cache[key] = pipe
    return pipe


def _check_inputs(ref_image: np.ndarray, pose_images: np.ndarray) -> None:
    if ref_image.ndim != 3 or ref_image.shape[2] != 3 or ref_image.dtype != np.uint8:
        raise ValueError(f"ref_image must be (H, W, 3) uint8 RGB, got {ref_image.shape} {ref_image.dtype}")
    if pose_images.ndim != 4 or pose_images.shape[3] != 3 or pose_images.dtype != np.uint8:
        raise ValueError(
            f"pose_images must be (F, H, W, 3) uint8, got {pose_images.shape} {pose_images.dtype}"
        )
    frames, height, width = pose_images.shape[:3]
    if frames == 0:
        raise ValueError("pose_images holds no frames")
    if height % 8 or width % 8:
        raise ValueError(f"frame size {width}x{height} must be a multiple of 8 (the VAE's factor)")


def generate_video(
    ref_image: np.ndarray,
    pose_images: np.ndarray,
    *,
    weights: Path,
    steps: int = 25,
    cfg: float = 3.5,
    seed: int = 42,
    exact: bool = True,
    device: str | None = None,
    dtype: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Animate `ref_image` (H, W, 3) uint8 RGB along `pose_images` (F, H, W, 3) uint8 → (F, H, W, 3) uint8 RGB.

    The output has the pose images' size; the reference is resized to it. Initial noise comes from a CPU
    generator seeded with `seed` (as upstream), so a run is reproducible across devices. progress(step, total)
    is called after each denoising step. Raises WeightsError for an unusable weights folder.
    """
    _check_inputs(ref_image, pose_images)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    dev, torch_dtype = pick_device(device, dtype)
    pipe = load_pipeline(Path(weights), dev, torch_dtype)
    frames, height, width = pose_images.shape[:3]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, 4, frames, height // 8, width // 8), generator=generator, dtype=torch_dtype)
    _, video = pipe(
        Image.fromarray(ref_image),
        pose_images,
        num_inference_steps=steps,
        guidance_scale=cfg,
        latents=noise,
        exact=exact,
        progress=progress,
    )
    assert video is not None
    frames_out = video[0].permute(1, 2, 3, 0).float().cpu() * 255.0  # (F, H, W, 3)
    # upstream's video writer truncates (astype(uint8)); rounding is the better default otherwise
    pixels = frames_out if exact else frames_out.round()
    return pixels.clamp(0, 255).to(torch.uint8).numpy()
