"""Seam measurement of the streaming Lmk2Video engine (issue 5, item 3).

Seam ratio r = mean |Δ latent| between consecutive frames across a window boundary / the same inside windows,
on final latents. Random tiny weights carry almost no temporal coupling, so the initial noise is temporally
correlated (AR(1) along frames, ρ = 0.99, marginally N(0, 1)) as a stand-in for coherent content, and r is
normalised between two anchors on the same poses and noise: r_a, the offline joint sampler (windows averaged,
no CFG) and r_b, independent windows each with fresh noise: s = (r - r_a) / (r_b - r_a).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from facecast.models.aniportrait.streaming.lmk2video import StreamingLmk2Video, tensor_noise_field
from facecast.models.aniportrait.streaming.sampler import WindowJob


def ar1_noise(frames: int, latent_hw: tuple[int, int], *, rho: float = 0.99, seed: int = 0) -> torch.Tensor:
    """(4, frames, h, w) noise, AR(1) along frames with coefficient rho, marginally N(0, 1)."""
    z = torch.randn((4, frames, *latent_hw), generator=torch.Generator().manual_seed(seed))
    out = torch.empty_like(z)
    out[:, 0] = z[:, 0]
    for k in range(1, frames):
        out[:, k] = rho * out[:, k - 1] + (1.0 - rho**2) ** 0.5 * z[:, k]
    return out


def window_starts(num_frames: int, hop: int) -> list[int]:
    """First new frame of every causal window after the first (the boundaries)."""
    return list(range(hop, num_frames, hop))


def seam_ratio(latents: torch.Tensor, boundaries: list[int]) -> float:
    """latents (4, F, h, w); boundaries: frames b whose pair (b-1, b) crosses a window edge → r."""
    step = (latents[:, 1:] - latents[:, :-1]).abs().mean(dim=(0, 2, 3))  # step[b-1] = |x_b - x_{b-1}|
    across = [b - 1 for b in boundaries if 0 < b < latents.shape[1]]
    inside = [i for i in range(step.shape[0]) if i not in across]
    if not across or not inside:
        raise ValueError("need at least one boundary and one pair inside a window")
    return float(step[across].mean() / step[inside].mean())


def streaming_latents(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray, noise: torch.Tensor, avatar_key: str
) -> torch.Tensor:
    """The stream's final latents (4, F, h, w) for poses (F, H, W, 3) with the given noise field (4, F, h, w)."""
    stream = engine.open_stream(
        ref, avatar_key=avatar_key, noise=tensor_noise_field(noise), keep_latents=True
    )
    for pose in poses:
        stream.push(pose)
    stream.flush()
    assert stream.latents is not None
    latents = torch.stack([stream.latents[k] for k in range(len(poses))], dim=1)
    stream.close()
    return latents


def offline_latents(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray, noise: torch.Tensor, steps: int
) -> torch.Tensor:
    """Offline joint sampler (closed-loop windows averaged, no CFG, non-exact) → final latents (4, F, h, w)."""
    pipe = engine.pipe

    def run() -> torch.Tensor:
        latents, _ = pipe(
            Image.fromarray(ref), poses, num_inference_steps=steps, guidance_scale=1.0,
            latents=noise[None], exact=False, decode=False,
        )  # fmt: skip
        return latents[0].float().cpu()

    return engine.worker.call(run)


def independent_latents(
    engine: StreamingLmk2Video, ref: np.ndarray, poses: np.ndarray, avatar_key: str, *, rho: float, seed: int
) -> torch.Tensor:
    """The streaming window layout, every window denoised alone from its own fresh AR(1) noise → (4, F, h, w)."""
    avatar = engine.avatar_state(ref, avatar_key)
    hop, overlap = engine.hop, engine.overlap
    parts = []
    for w, start in enumerate([0, *window_starts(len(poses), hop)]):
        first = max(0, start - overlap)
        stop = min(start + hop, len(poses))
        fresh = ar1_noise(stop - first, engine.latent_hw, rho=rho, seed=seed * 10_007 + w + 1)
        job = WindowJob(
            avatar=avatar,
            history=torch.zeros((4, 0, *engine.latent_hw)),
            history_noise=torch.zeros((4, 0, *engine.latent_hw)),
            noise=fresh,
            poses=poses[first:stop],
        )
        latents, _ = engine.worker.submit(job).result()
        parts.append(latents[:, start - first :].float().cpu())
    return torch.cat(parts, dim=1)


@dataclass
class SeamReport:
    seam_score: float  # s, mean over seeds
    seam_ratio: float  # r, mean over seeds
    seam_anchor_offline: float  # r_a
    seam_anchor_independent: float  # r_b
    per_seed_scores: list[float]

    def to_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def measure_seams(
    engine: StreamingLmk2Video,
    ref: np.ndarray,
    poses: np.ndarray,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    rho: float = 0.99,
    avatar_key: str = "seams",
) -> SeamReport:
    """Seam score of the engine's settings on these poses (F ≥ 2 windows), r / r_a / r_b means over seeds."""
    boundaries = window_starts(len(poses), engine.hop)
    steps = len(engine.sampler.scheduler.timesteps)
    rs, ras, rbs, scores = [], [], [], []
    for seed in seeds:
        noise = ar1_noise(len(poses), engine.latent_hw, rho=rho, seed=seed)
        r = seam_ratio(streaming_latents(engine, ref, poses, noise, avatar_key), boundaries)
        r_a = seam_ratio(offline_latents(engine, ref, poses, noise, steps), boundaries)
        indep = independent_latents(engine, ref, poses, avatar_key, rho=rho, seed=seed)
        r_b = seam_ratio(indep, boundaries)
        rs.append(r)
        ras.append(r_a)
        rbs.append(r_b)
        scores.append((r - r_a) / (r_b - r_a))
    return SeamReport(
        seam_score=float(np.mean(scores)),
        seam_ratio=float(np.mean(rs)),
        seam_anchor_offline=float(np.mean(ras)),
        seam_anchor_independent=float(np.mean(rbs)),
        per_seed_scores=[round(s, 4) for s in scores],
    )
