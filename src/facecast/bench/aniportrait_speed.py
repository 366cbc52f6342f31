"""`facecast bench aniportrait`: speed of the Lmk2Video engine (prints figures, last line JSON).

Either from a weights folder (`--weights DIR`, e.g. fixture A's tiny weights on CPU) or with random
full-size SD-1.5 networks (`--random-full-size`, for a GPU; no download needed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "aniportrait", help="Lmk2Video speed: UNet step per window, VAE decode, per frame"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, metavar="DIR", help="AniPortrait weights folder")
    source.add_argument(
        "--random-full-size", action="store_true", help="full-size SD-1.5 networks with random weights (GPU)"
    )
    parser.add_argument(
        "--size", type=int, default=128, help="frame width = height in pixels (multiple of 8)"
    )
    parser.add_argument("--frames", type=int, default=16, help="clip length in frames")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps")
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each single-call figure")
    parser.set_defaults(func=run)


def _random_full_size_pipeline(device: Any, dtype: Any) -> Any:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from facecast.models.aniportrait.networks.arch import SD15_UNET_CONFIG, official_arch
    from facecast.models.aniportrait.networks.pose_guider import PoseGuider
    from facecast.models.aniportrait.networks.unets import build_denoising_unet, build_reference_unet
    from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline

    arch = official_arch(dict(SD15_UNET_CONFIG))
    with torch.device(device):
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
        )
        clip = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                patch_size=14,
                image_size=224,
                projection_dim=768,
            )  # fmt: skip
        )
        modules = (
            vae,
            clip,
            build_reference_unet(arch),
            build_denoising_unet(arch),
            PoseGuider(arch.pose_guider),
        )
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # no "keep in float32" advice for random weights
    try:
        for module in modules:
            module.to(dtype=dtype).eval()
    finally:
        diffusers_logging.set_verbosity(verbosity)
    modules[4].train()
    return Lmk2VideoPipeline(arch, *modules, DDIMScheduler(**arch.scheduler))  # type: ignore[arg-type]


def _timer(device: Any) -> Callable[[Callable[[], Any], int], float]:
    import torch

    def timed(fn: Callable[[], Any], repeats: int) -> float:
        fn()  # warm-up (kernel selection, allocations)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    return timed


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from facecast.cli.errors import CliError
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.aniportrait.pipeline.generate import load_pipeline, pick_device

    if args.size % 8 or args.size <= 0 or args.frames <= 0 or args.steps <= 0:
        raise CliError("--size must be a positive multiple of 8; --frames and --steps positive")
    device, dtype = pick_device(args.device, args.dtype)
    try:
        pipe = (
            _random_full_size_pipeline(device, dtype)
            if args.random_full_size
            else load_pipeline(args.weights, device, dtype)
        )
    except WeightsError as exc:
        raise CliError(str(exc)) from exc
    rng = np.random.default_rng(0)
    ref = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    poses = np.zeros((args.frames, args.size, args.size, 3), dtype=np.uint8)
    poses[:, args.size // 3 : args.size // 3 + 2, args.size // 4 : 3 * args.size // 4] = (10, 200, 10)
    window = min(args.frames, pipe.arch.context_frames)
    latent = args.size // 8
    timed = _timer(device)
    do_cfg = args.cfg > 1.0
    batch = 2 if do_cfg else 1
    with torch.no_grad():
        clip = pipe.encode_clip(ref)
        ref_latents = pipe.encode_reference_latents(ref, args.size, args.size)
        reference_s = timed(lambda: pipe.build_reference_bank(ref_latents, clip, True), args.repeats)
        pipe.reference.bank = pipe.build_reference_bank(ref_latents, clip, True)
        pose_window = torch.from_numpy(poses[:window])
        pose_s = timed(lambda: pipe.pose_features(pose_window, batch), args.repeats)
        features = pipe.pose_features(pose_window, batch)
        sample = torch.randn((batch, 4, window, latent, latent), device=device, dtype=dtype)
        cond = clip.unsqueeze(1)
        states = torch.cat([torch.zeros_like(cond), cond]) if do_cfg else cond
        rows = torch.tensor([False, True] if do_cfg else [True], device=device)
        t = torch.tensor(999, device=device)
        unet_s = timed(lambda: pipe.denoise_window(sample, t, states, features, rows), args.repeats)
        latents = torch.randn((1, 4, window, latent, latent), device=device, dtype=dtype)
        decode_s = timed(lambda: pipe.decode(latents), 1) / window
    noise = torch.randn(
        (1, 4, args.frames, latent, latent), generator=torch.Generator().manual_seed(0), dtype=dtype
    )
    call = lambda: pipe(ref, poses, num_inference_steps=args.steps, guidance_scale=args.cfg, latents=noise)  # noqa: E731
    total_s = timed(call, 1)
    figures = {
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "dtype": str(dtype).replace("torch.", ""),
        "size": args.size,
        "frames": args.frames,
        "steps": args.steps,
        "cfg": args.cfg,
        "weights": "random full-size SD-1.5" if args.random_full_size else str(args.weights),
        "unet_s_per_step_per_window": round(unet_s, 5),
        "pose_guider_s_per_window": round(pose_s, 5),
        "reference_net_s_once": round(reference_s, 5),
        "vae_decode_s_per_frame": round(decode_s, 5),
        "total_s_per_output_frame": round(total_s / args.frames, 5),
        "unet_evaluations_per_output_frame": round(
            args.steps * len(_windows(pipe, args.frames)) * window * batch / args.frames, 2
        ),
    }
    print(
        f"device {figures['device']} {figures['dtype']}, {args.size}x{args.size}, {args.frames} frames, {args.steps} steps"
    )
    print(f"denoising UNet3D, one step of one {window}-frame window (CFG batch {batch}): {unet_s:.4f} s")
    print(f"PoseGuider per window: {pose_s:.4f} s; ReferenceNet once: {reference_s:.4f} s")
    print(f"VAE decode per frame: {decode_s:.4f} s")
    print(f"total per output frame (whole clip, {args.steps} steps): {total_s / args.frames:.4f} s")
    print(json.dumps(figures))
    return 0


def _windows(pipe: Any, frames: int) -> list[list[int]]:
    from facecast.models.aniportrait.pipeline.context_windows import context_windows

    return context_windows(frames, pipe.arch.context_frames, pipe.arch.context_overlap)
