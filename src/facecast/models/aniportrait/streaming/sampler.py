"""Causal-window sampler of the streaming Lmk2Video engine: several streams' windows in one UNet call.

A window = H history frames (already emitted: their final latents are known) + N new frames. At every step the
history frames are re-noised to that step's level with their own noise-field values (frame k always gets the
same noise, whichever window computes it: docs/aniportrait.md §6, Streaming consequences), the new frames
follow the DDIM (trailing, v-prediction, eta 0) trajectory from their noise-field values. PoseGuider features
are computed once per window on a longer pose context (batch statistics over the previous frames too,
docs/aniportrait.md §6.1), reference keys/values come precomputed from the avatar cache (per sample),
guidance is off by default (cond branch only).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import AutoencoderTiny, DDIMScheduler

from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline
from facecast.models.aniportrait.streaming.avatar_state import AvatarState


@dataclass
class WindowJob:
    """One causal window of one stream (latent size h x w, pixel size H x W).

    history: (4, Hh, h, w) final latents of the history frames (Hh may be 0); history_noise: their noise (4, Hh, h, w);
    noise: (4, N, h, w) noise of the N new frames; poses: (P, H, W, 3) uint8 pose images ending with the window's
    Hh + N frames (P ≥ Hh + N: the earlier ones only feed the PoseGuider's batch statistics).
    """

    avatar: AvatarState
    history: torch.Tensor
    history_noise: torch.Tensor
    noise: torch.Tensor
    poses: np.ndarray
    future: concurrent.futures.Future[tuple[torch.Tensor, np.ndarray]] = field(
        default_factory=concurrent.futures.Future
    )

    @property
    def shape_key(self) -> tuple[int, int]:
        """Jobs batch together when their window layouts (history, new frames) match."""
        return self.history.shape[1], self.noise.shape[1]


class CausalWindowSampler:
    """Runs batches of WindowJobs: pose features per job, one UNet call per step for the batch, batched decode.

    Not thread-safe: one worker thread owns it (worker.WindowWorker).
    """

    def __init__(
        self,
        pipe: Lmk2VideoPipeline,
        *,
        steps: int,
        guidance: float = 1.0,
        tiny_vae: AutoencoderTiny | None = None,
        decode_batch: int = 16,
    ) -> None:
        if steps < 1:
            raise ValueError("steps must be at least 1")
        self.pipe = pipe
        self.guidance = guidance
        self.tiny_vae = tiny_vae
        self.decode_batch = max(1, decode_batch)
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.scheduler.set_timesteps(steps, device=pipe.device)
        self.unet_frame_evals = 0  # frames x batch rows through the denoising UNet, CFG rows included

    @torch.no_grad()
    def pose_features(self, poses: np.ndarray, frames: int) -> list[torch.Tensor]:
        """poses (P, H, W, 3) uint8 → 5 features (1, C_i, frames, h_i, w_i) of the last `frames` poses.

        BatchNorm statistics span all P frames (train mode, docs/aniportrait.md §6.1): a longer context than
        the window shrinks the statistic jump between consecutive windows.
        """
        features = self.pipe.pose_features(torch.from_numpy(np.ascontiguousarray(poses)), 1)
        return [f[:, :, -frames:] for f in features]

    @torch.no_grad()
    def denoise(self, jobs: list[WindowJob]) -> torch.Tensor:
        """Jobs of one shape_key → final latents of their new frames (B, 4, N, h, w)."""
        pipe, scheduler = self.pipe, self.scheduler
        device, dtype = pipe.device, pipe.dtype
        history_frames, new_frames = jobs[0].shape_key
        window = history_frames + new_frames
        # 1. Per-sample inputs: history, noise, pose features (per stream statistics), CLIP states, reference K/V
        x0_history = torch.stack([j.history.to(device, dtype) for j in jobs])
        eps_history = torch.stack([j.history_noise.to(device, dtype) for j in jobs])
        x_new = torch.stack([j.noise.to(device, dtype) for j in jobs]) * scheduler.init_noise_sigma
        per_job = [self.pose_features(j.poses, window) for j in jobs]
        features = [torch.cat(parts) for parts in zip(*per_job, strict=True)]
        cond = torch.cat([j.avatar.clip_embeds for j in jobs]).unsqueeze(1)  # (B, 1, D)
        names = list(jobs[0].avatar.ref_kv)
        kv = {
            n: (
                torch.cat([j.avatar.ref_kv[n][0] for j in jobs]),
                torch.cat([j.avatar.ref_kv[n][1] for j in jobs]),
            )
            for n in names
        }
        do_cfg = self.guidance > 1.0
        batch = len(jobs)
        # rows [uncond x B ; cond x B]: the uncond half has no reference attention (docs/aniportrait.md §4)
        if do_cfg:
            states = torch.cat([torch.zeros_like(cond), cond])
            rows = torch.tensor([False] * batch + [True] * batch, device=device)
            features = [f.repeat(2, 1, 1, 1, 1) for f in features]
            kv = {n: (k.repeat(2, 1, 1), v.repeat(2, 1, 1)) for n, (k, v) in kv.items()}
        else:
            states, rows = cond, torch.ones(batch, dtype=torch.bool, device=device)
        # 2. Denoise: history re-noised to each step's level with the same per-frame noise, new frames by DDIM
        for t in scheduler.timesteps:
            if history_frames:
                alpha = float(scheduler.alphas_cumprod[int(t)])
                x_history = alpha**0.5 * x0_history + (1.0 - alpha) ** 0.5 * eps_history
                x = torch.cat([x_history, x_new], dim=2)
            else:
                x = x_new
            sample = scheduler.scale_model_input(x, t)
            if do_cfg:
                sample = sample.repeat(2, 1, 1, 1, 1)
            v = pipe.denoise_window(sample, t, states, features, rows, reference_kv=kv)
            self.unet_frame_evals += v.shape[0] * v.shape[2]
            if do_cfg:
                uncond, text = v.chunk(2)
                v = uncond + self.guidance * (text - uncond)
            x_new = scheduler.step(v, t, x, eta=0.0).prev_sample[:, :, history_frames:]
        return x_new  # the last step lands on alpha = 1: these are the final latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """latents (M, 4, h, w) → (M, H, W, 3) uint8 RGB, `decode_batch` frames per VAE call."""
        out = []
        for chunk in latents.split(self.decode_batch):
            if self.tiny_vae is not None:  # TAESD decodes UNet-space latents (scaling_factor 1) to [-1, 1]
                tiny = self.tiny_vae
                image = tiny.decode(chunk.to(tiny.dtype) / tiny.config.scaling_factor).sample
            else:
                image = self.pipe.vae.decode(chunk / self.pipe.arch.vae_latent_scale).sample
            pixels = ((image.float() / 2 + 0.5).clamp(0, 1) * 255.0).round().to(torch.uint8)
            out.append(pixels.permute(0, 2, 3, 1).cpu())
        return torch.cat(out).numpy()

    def run(self, jobs: list[WindowJob]) -> list[tuple[torch.Tensor, np.ndarray]]:
        """Jobs of one shape_key → per job (final latents (4, N, h, w), frames (N, H, W, 3) uint8)."""
        latents = self.denoise(jobs)
        new_frames = latents.shape[2]
        frames = self.decode(latents.transpose(1, 2).flatten(0, 1))
        return [(latents[i], frames[i * new_frames : (i + 1) * new_frames]) for i in range(len(jobs))]
