"""Streaming Lmk2Video: drawn pose images in, AniPortrait frames out, as they arrive (issue 5).

One `StreamingLmk2Video` per device holds the networks, the per-avatar cache and the worker thread; each session
opens a `Lmk2VideoStream`. A stream cuts its poses into causal windows: the first window is `hop` new frames,
every later one is up to `window - hop` history frames (already emitted) + `hop` new ones, so frame k comes out
once pose k + hop - 1 has been pushed at the latest (`latency_frames` = hop). Cost per output frame:
steps x (history + hop) / hop UNet frame-evaluations (4 x 16 / 12 = 5.3 by default, against 66.7 offline).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facecast.models.aniportrait.networks.weights import load_lmk2video
from facecast.models.aniportrait.pipeline.generate import pick_device
from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline
from facecast.models.aniportrait.streaming.avatar_state import AvatarCache, AvatarState, compute_avatar_state
from facecast.models.aniportrait.streaming.sampler import CausalWindowSampler, WindowJob
from facecast.models.aniportrait.streaming.worker import WindowWorker

NoiseField = Callable[[int, int], torch.Tensor]
"""(start, stop) → initial noise (4, stop - start, h, w) of those absolute frames; the same frame, the same noise."""

_GOLDEN = 0x9E3779B97F4A7C15
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")


def seeded_noise_field(seed: int, latent_hw: tuple[int, int]) -> NoiseField:
    """N(0, 1) noise per absolute frame k from a CPU generator seeded with (seed, k): device-independent."""

    def field(start: int, stop: int) -> torch.Tensor:
        frames = [
            torch.randn(
                (4, *latent_hw), generator=torch.Generator().manual_seed((seed * _GOLDEN + k) % 2**63)
            )
            for k in range(start, stop)
        ]
        return torch.stack(frames, dim=1) if frames else torch.zeros((4, 0, *latent_hw))

    return field


def tensor_noise_field(noise: torch.Tensor) -> NoiseField:
    """A precomputed field (4, F, h, w) (e.g. temporally correlated noise for seam measurements)."""

    def field(start: int, stop: int) -> torch.Tensor:
        if stop > noise.shape[1]:
            raise IndexError(f"the noise field holds {noise.shape[1]} frames, frame {stop - 1} was asked for")
        return noise[:, start:stop]

    return field


class StreamingLmk2Video:
    """One per device, shared by all sessions. Thread-safe; the networks run on its own worker thread.

    weights: any folder load_lmk2video accepts; width/height: output size (multiples of 8); steps: DDIM steps
    (trailing schedule); hop: new frames per window (window - hop history frames); guidance > 1 turns on CFG;
    pose_context: frames whose statistics the PoseGuider's BatchNorm uses: the window with its history frames
    (default 16), more reaches further back;
    max_batch / batch_wait_s: windows of several streams per UNet call, and how long a lone window waits for company;
    tiny_vae: an AutoencoderTiny folder used for decoding instead of the KL VAE; compile: torch.compile mode for
    the denoising UNet ("default", "reduce-overhead" = CUDA graphs, "max-autotune"), off by default.
    """

    def __init__(
        self,
        weights: Path,
        *,
        width: int,
        height: int,
        steps: int = 4,
        hop: int = 12,
        guidance: float = 1.0,
        device: str | None = None,
        dtype: str | None = None,
        seed: int = 0,
        pose_context: int = 16,
        max_batch: int = 8,
        batch_wait_s: float = 0.002,
        tiny_vae: Path | None = None,
        compile: str | None = None,
        decode_batch: int | None = None,
        avatar_capacity: int = 16,
    ) -> None:
        if width <= 0 or height <= 0 or width % 8 or height % 8:
            raise ValueError(
                f"frame size {width}x{height} must be positive multiples of 8 (the VAE's factor)"
            )
        if compile not in COMPILE_MODES:
            raise ValueError(
                f"compile mode must be one of {', '.join(map(str, COMPILE_MODES))}, not {compile!r}"
            )
        dev, torch_dtype = pick_device(device, dtype)
        c = load_lmk2video(Path(weights), device=dev, dtype=torch_dtype)
        self.window = c.arch.context_frames
        if not 1 <= hop <= self.window:
            raise ValueError(f"hop must be between 1 and the window ({self.window} frames), got {hop}")
        self.width, self.height, self.hop, self.seed = width, height, hop, seed
        self.overlap = self.window - hop
        self.pose_context = max(pose_context, self.window)
        self.pipe = Lmk2VideoPipeline(
            c.arch, c.vae, c.image_encoder, c.reference_unet, c.denoising_unet, c.pose_guider, c.scheduler
        )
        if compile is not None:  # in place: module names (reference K/V lookups, hooks) stay as they are
            self.pipe.denoising_unet.compile(mode=compile)
        tiny = None
        if tiny_vae is not None:
            from diffusers import AutoencoderTiny

            try:
                tiny = AutoencoderTiny.from_pretrained(
                    str(tiny_vae), torch_dtype=torch_dtype, local_files_only=True
                )
            except (OSError, ValueError) as exc:  # diffusers: missing folder, config or weights file
                raise ValueError(f"{tiny_vae} is not an AutoencoderTiny (TAESD) folder: {exc}") from None
            tiny = tiny.to(dev).eval()
        if decode_batch is None:
            # Batched decode feeds a GPU; on a CPU one frame at a time keeps activations in cache and
            # measured 40% faster per frame (fixture VAE at 256 px: 41 vs 70 ms).
            decode_batch = 16 if dev.type == "cuda" else 1
        self.sampler = CausalWindowSampler(
            self.pipe, steps=steps, guidance=guidance, tiny_vae=tiny, decode_batch=decode_batch
        )
        self.worker = WindowWorker(self.sampler, max_batch=max_batch, batch_wait_s=batch_wait_s)
        self.avatars = AvatarCache(avatar_capacity)

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // 8, self.width // 8

    def avatar_state(self, ref_image: np.ndarray, avatar_key: str) -> AvatarState:
        """The cached per-avatar state, computed on the worker thread on a miss."""
        if ref_image.ndim != 3 or ref_image.shape[2] != 3 or ref_image.dtype != np.uint8:
            raise ValueError(
                f"ref_image must be (H, W, 3) uint8 RGB, got {ref_image.shape} {ref_image.dtype}"
            )

        def compute() -> AvatarState:
            return self.worker.call(
                lambda: compute_avatar_state(
                    self.pipe, ref_image, key=avatar_key, height=self.height, width=self.width
                )
            )

        return self.avatars.get_or_compute(avatar_key, compute)

    def open_stream(
        self,
        ref_image: np.ndarray,
        *,
        avatar_key: str,
        seed: int = 0,
        noise: NoiseField | None = None,
        keep_latents: bool = False,
    ) -> Lmk2VideoStream:
        """ref_image (H, W, 3) uint8 RGB (resized to the engine's size if needed) → a new stream.

        noise: the stream's noise field (default: seeded by (engine seed, seed)); keep_latents: record every
        emitted frame's final latents in `stream.latents` (seam measurements).
        """
        avatar = self.avatar_state(ref_image, avatar_key)
        field = noise or seeded_noise_field(self.seed * 1_000_003 + seed, self.latent_hw)
        return Lmk2VideoStream(self, avatar, field, keep_latents=keep_latents)

    def close(self) -> None:
        self.worker.close()

    def unet_evals(self) -> int:
        """UNet frame-evaluations so far (batch rows x frames of every denoising UNet call, CFG rows included)."""
        return self.sampler.unet_frame_evals


class Lmk2VideoStream:
    """One session's causal windows. push/flush from one thread at a time; reset/close from any thread."""

    def __init__(
        self,
        engine: StreamingLmk2Video,
        avatar: AvatarState,
        noise: NoiseField,
        *,
        keep_latents: bool = False,
    ) -> None:
        self.engine = engine
        self.avatar = avatar
        self.noise = noise
        self.latency_frames = engine.hop
        self.latents: dict[int, torch.Tensor] | None = {} if keep_latents else None
        self._next = 0  # absolute index of the next frame to compute
        self._pending: list[np.ndarray] = []  # pushed poses not yet in a window
        self._pose_history: list[np.ndarray] = []  # poses of the last frames computed (PoseGuider context)
        self._history = torch.zeros((4, 0, *engine.latent_hw))  # final latents of the last `overlap` frames
        self._closed = False
        self._future: concurrent.futures.Future[tuple[torch.Tensor, np.ndarray]] | None = None
        self._lock = threading.Lock()  # guards the fields above
        self._call_lock = threading.Lock()  # serialises push/flush

    def _check_pose(self, pose_image: np.ndarray) -> None:
        want = (self.engine.height, self.engine.width, 3)
        if pose_image.shape != want or pose_image.dtype != np.uint8:
            raise ValueError(f"pose image must be {want} uint8, got {pose_image.shape} {pose_image.dtype}")

    def push(self, pose_image: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """One pose image (H, W, 3) uint8 → frames completed by it (absolute index, (H, W, 3) uint8), in order."""
        self._check_pose(pose_image)
        with self._call_lock:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the stream is closed")
                self._pending.append(pose_image.copy())  # the caller may reuse its buffer
            out: list[tuple[int, np.ndarray]] = []
            while len(self._pending) >= self.engine.hop:
                out += self._run_window(self.engine.hop)
            return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of input: compute the poses left (a shorter last window)."""
        with self._call_lock:
            out: list[tuple[int, np.ndarray]] = []
            while self._pending and not self._closed:
                out += self._run_window(min(len(self._pending), self.engine.hop))
            return out

    def reset(self) -> None:
        """Interrupt: drop poses not yet computed (and a queued window not yet started).

        Numbering continues from the last frame computed: the next pose pushed becomes the next frame index.
        The history (last frames' latents and poses) is kept, so the next window continues what was shown.
        """
        with self._lock:
            self._pending.clear()
            if self._future is not None:
                self._future.cancel()  # only succeeds while it is queued

    def close(self) -> None:
        self.reset()
        with self._lock:
            self._closed = True

    def _run_window(self, new_frames: int) -> list[tuple[int, np.ndarray]]:
        engine = self.engine
        # 1. Build the window job from the stream state
        with self._lock:
            if len(self._pending) < new_frames:
                return []
            poses, self._pending = self._pending[:new_frames], self._pending[new_frames:]
            start = self._next
            history = self._history
            context = (self._pose_history + poses)[-engine.pose_context :]
            job = WindowJob(
                avatar=self.avatar,
                history=history,
                history_noise=self.noise(start - history.shape[1], start),
                noise=self.noise(start, start + new_frames),
                poses=np.stack(context),
            )
            self._future = engine.worker.submit(job)
        # 2. Wait for the worker (other streams' windows may share the batch)
        try:
            latents, frames = job.future.result()
        except concurrent.futures.CancelledError:
            return []
        finally:
            with self._lock:
                self._future = None
        # 3. Commit: these frames are final; they become the history of the next window
        with self._lock:
            latents = latents.detach()
            self._history = torch.cat([history.to(latents), latents], dim=1)[:, -engine.overlap :]
            if engine.overlap == 0:
                self._history = latents[:, :0]
            self._pose_history = (self._pose_history + poses)[-engine.pose_context :]
            self._next = start + new_frames
            if self.latents is not None:
                for i in range(new_frames):
                    self.latents[start + i] = latents[:, i].float().cpu()
        return [(start + i, frames[i]) for i in range(new_frames)]
