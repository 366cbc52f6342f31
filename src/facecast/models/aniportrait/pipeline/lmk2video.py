"""Lmk2Video: reference image + drawn pose images → video: AniPortrait's offline sampler.

The sampler of docs/aniportrait.md §5, with the traps of §6.

`exact=True` reproduces every quirk of the official loop (fp16-rounded reference bank, ReferenceNet and
PoseGuider on the CFG-duplicated batch, no-CFG window *summing*); `exact=False` keeps the method (same
windows, CFG, batch-statistics PoseGuider) but averages without CFG and skips the redundant work.
Either way the PoseGuider runs once per window and the CFG-unconditional rows skip reference attention,
work whose result upstream discards; `upstream_schedule=True` redoes that work (PoseGuider per window at
every step, reference attention on every row) to measure the published loop's cost. Outputs are the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from transformers import CLIPVisionModelWithProjection

from facecast.models.aniportrait.networks.arch import Lmk2VideoArch
from facecast.models.aniportrait.networks.pose_guider import PoseGuider
from facecast.models.aniportrait.networks.reference_attention import (
    ReferenceBankRecorder,
    ReferenceState,
    install_reference_processors,
)
from facecast.models.aniportrait.networks.unets import PoseFeatureHooks
from facecast.models.aniportrait.pipeline.context_windows import context_windows

try:  # transformers ≥ 5 names the PIL implementation explicitly (the default one needs torchvision)
    from transformers import CLIPImageProcessorPil as _ClipProcessor
except ImportError:  # pragma: no cover
    from transformers import CLIPImageProcessor as _ClipProcessor

Trace = dict[str, torch.Tensor]


class Lmk2VideoPipeline:
    """Components are the published networks; see weights.load_lmk2video to build them from a folder.

    Not re-entrant: the reference bank and pose features reach the UNet through shared processor/hook
    state, so one call at a time per pipeline (the engine runner owns threading).
    """

    def __init__(
        self,
        arch: Lmk2VideoArch,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNetMotionModel,
        pose_guider: PoseGuider,
        scheduler: DDIMScheduler,
    ) -> None:
        self.arch = arch
        self.vae = vae
        self.image_encoder = image_encoder
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.pose_guider = pose_guider
        self.scheduler = scheduler
        self.clip_processor = _ClipProcessor()
        self.vae_processor = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True)
        self.bank_recorder = ReferenceBankRecorder(reference_unet)
        self.reference = ReferenceState()
        install_reference_processors(denoising_unet, self.reference)
        self.pose_hooks = PoseFeatureHooks(denoising_unet)

    @property
    def device(self) -> torch.device:
        return self.denoising_unet.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoising_unet.conv_in.weight.dtype

    # -- stages (each usable on its own by the conformance check) -------------------------------------------

    def encode_clip(self, ref_image: Image.Image, trace: Trace | None = None) -> torch.Tensor:
        """Reference → CLIP image embedding (1, D): PIL bicubic 224², default CLIPImageProcessor."""
        pixels = self.clip_processor(images=ref_image.resize((224, 224)), return_tensors="pt").pixel_values
        embeds = self.image_encoder(pixels.to(self.device, self.dtype)).image_embeds
        if trace is not None:
            trace["clip_pixel_values"] = pixels
            trace["clip_image_embeds"] = embeds
        return embeds

    def encode_reference_latents(
        self, ref_image: Image.Image, height: int, width: int, trace: Trace | None = None
    ) -> torch.Tensor:
        """Reference → latents (1, 4, H/8, W/8): lanczos resize, [-1, 1], latent_dist.mean × 0.18215."""
        pixels = self.vae_processor.preprocess(ref_image, height=height, width=width)
        mean = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mean
        latents = mean * self.arch.vae_latent_scale
        if trace is not None:
            trace["vae_encode_input"] = pixels
            trace["ref_latent_dist_mean"] = mean
            trace["ref_image_latents"] = latents
        return latents

    def build_reference_bank(
        self,
        ref_latents: torch.Tensor,
        clip_embeds: torch.Tensor,
        exact: bool,
        trace: Trace | None = None,
        cfg: bool = True,
    ) -> dict[str, torch.Tensor]:
        """ReferenceNet once at t=0 → {block name: (1, h*w, C) cond bank}.

        exact: round the bank to fp16 (docs/aniportrait.md §6.6) and, under CFG, run on the pair
        [zeros, clip] like upstream (only the cond row is read); otherwise the cond row alone.
        """
        cond = clip_embeds.unsqueeze(1)
        if exact and cfg:
            latents, states = ref_latents.repeat(2, 1, 1, 1), torch.cat([torch.zeros_like(cond), cond])
        else:
            latents, states = ref_latents, cond
        self.bank_recorder.bank = {}
        self.bank_recorder.enabled = True
        try:
            self.reference_unet(latents, torch.zeros((), device=self.device), encoder_hidden_states=states)
        finally:
            self.bank_recorder.enabled = False
        bank = {}
        for name, tokens in self.bank_recorder.bank.items():
            if trace is not None:
                trace[f"refbank__{name}"] = tokens
            row = tokens[-1:]
            bank[name] = row.to(torch.float16).to(self.dtype) if exact else row
        return bank

    def pose_features(self, pose_window: torch.Tensor, cfg_batch: int) -> list[torch.Tensor]:
        """uint8 pose images (F, H, W, 3) → 5 features (cfg_batch, C, F, h, w), batch statistics of this window.

        cfg_batch rows are identical: exact mode feeds the CFG-duplicated batch like upstream.
        """
        pose = pose_window.to(self.device).permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, F, H, W)
        pose = self.pose_guider.scale_input(pose).repeat(cfg_batch, 1, 1, 1, 1)
        self.pose_guider.train()  # docs/aniportrait.md §6.1: never eval
        return self.pose_guider(pose)

    def denoise_window(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        states: torch.Tensor,
        features: list[torch.Tensor],
        reference_rows: torch.Tensor,
        reference_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        upstream_schedule: bool = False,
    ) -> torch.Tensor:
        """One UNet3D call: latents (B, 4, F, h, w), states (B, 1, D), features (B, C_i, F, h_i, w_i) → v (B, 4, F, h, w).

        reference_kv: block name → precomputed reference (keys, values) (B, L, C), one per batch row (used
        instead of the bank; the streaming engine batches several avatars this way). upstream_schedule: every
        row attends to the reference and the unconditional rows are then recomputed (upstream's cost).
        """
        frames = latents.shape[2]
        self.pose_hooks.features = [f.transpose(1, 2).flatten(0, 1) for f in features]
        self.reference.reference_rows = reference_rows.repeat_interleave(frames)
        self.reference.upstream_schedule = upstream_schedule
        if reference_kv is not None:
            self.reference.kv = {
                name: (k.repeat_interleave(frames, dim=0), v.repeat_interleave(frames, dim=0))
                for name, (k, v) in reference_kv.items()
            }
        try:
            out = self.denoising_unet(
                latents, t, encoder_hidden_states=states.repeat_interleave(frames, dim=0)
            )
        finally:
            self.pose_hooks.features = None
            self.reference.reference_rows = None
            self.reference.kv = None
            self.reference.upstream_schedule = False
        return out.sample

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (1, 4, F, h, w) → video (1, 3, F, H, W) in [0, 1], one frame at a time."""
        frames = [
            self.vae.decode(latents[:, :, i] / self.arch.vae_latent_scale).sample
            for i in range(latents.shape[2])
        ]
        return (torch.stack(frames, dim=2) / 2 + 0.5).clamp(0, 1)

    # -- the sampler ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        ref_image: Image.Image,
        pose_images: np.ndarray,
        *,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.5,
        latents: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        exact: bool = True,
        progress: Callable[[int, int], None] | None = None,
        trace: Trace | None = None,
        decode: bool = True,
        upstream_schedule: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pose_images (F, H, W, 3) uint8 → (final latents (1, 4, F, H/8, W/8), video (1, 3, F, H, W) or None).

        latents: initial noise (1, 4, F, H/8, W/8); else drawn on the CPU from `generator` (upstream habit).
        upstream_schedule: also do the work upstream does and discards (cost baselines; see the module note).
        """
        num_frames, height, width = pose_images.shape[:3]
        do_cfg = guidance_scale > 1.0
        # 1. Reference: CLIP embedding, VAE latents, ReferenceNet bank (once for the whole clip)
        clip_embeds = self.encode_clip(ref_image, trace)
        ref_latents = self.encode_reference_latents(ref_image, height, width, trace)
        self.reference.bank = self.build_reference_bank(ref_latents, clip_embeds, exact, trace, cfg=do_cfg)
        cond = clip_embeds.unsqueeze(1)
        states = torch.cat([torch.zeros_like(cond), cond]) if do_cfg else cond
        reference_rows = torch.tensor([False, True] if do_cfg else [True], device=self.device)
        # 2. Timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        shape = (1, 4, num_frames, height // 8, width // 8)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = (latents.to(self.device, self.dtype)) * self.scheduler.init_noise_sigma
        if trace is not None:
            trace["scheduler_timesteps"] = timesteps
            trace["scheduler_alphas_cumprod"] = self.scheduler.alphas_cumprod
        # 3. Context windows and their PoseGuider features (identical at every step, computed once)
        windows = context_windows(num_frames, self.arch.context_frames, self.arch.context_overlap)
        poses = torch.from_numpy(np.ascontiguousarray(pose_images))
        cfg_batch = 2 if do_cfg and exact else 1

        def features_of(window: list[int]) -> list[torch.Tensor]:
            features = self.pose_features(poses[window], cfg_batch)
            return [f.repeat(2, 1, 1, 1, 1) for f in features] if cfg_batch == 1 and do_cfg else features

        window_features = []
        for k, window in enumerate(windows):
            features = features_of(window)
            window_features.append(features)
            if trace is not None:
                for j, fea in enumerate(features):
                    trace[f"step0_window{k}_posefea{j}"] = fea[:1]
        # 4. Denoising: every window at every step, per-frame average, CFG, one DDIM step over the clip
        batch = states.shape[0]
        for step, t in enumerate(timesteps):
            if trace is not None:
                trace[f"step{step}_timestep"] = t
                if step > 0:
                    trace[f"step{step}_latents_in"] = latents
            total = torch.zeros((batch, *shape[1:]), device=self.device, dtype=self.dtype)
            count = torch.zeros((1, 1, num_frames, 1, 1), device=self.device, dtype=self.dtype)
            for k, window in enumerate(windows):
                sample = latents[:, :, window].repeat(batch, 1, 1, 1, 1)
                sample = self.scheduler.scale_model_input(sample, t)
                # docs/aniportrait.md §5: upstream re-runs the PoseGuider at every step (same output)
                features = features_of(window) if upstream_schedule and step > 0 else window_features[k]
                v = self.denoise_window(
                    sample, t, states, features, reference_rows, upstream_schedule=upstream_schedule
                )
                if trace is not None and step == 0:
                    trace[f"step0_window{k}_unet_out"] = v
                total[:, :, window] += v
                count[:, :, window] += 1
            if do_cfg:
                uncond, text = (total / count).chunk(2)
                v_pred = uncond + guidance_scale * (text - uncond)
            else:
                # upstream sums overlapping windows without CFG (docs/aniportrait.md §6.9)
                v_pred = total if exact else total / count
            if trace is not None:
                trace[f"step{step}_v_pred_guided"] = v_pred
            latents = self.scheduler.step(v_pred, t, latents, eta=0.0).prev_sample
            if progress is not None:
                progress(step + 1, len(timesteps))
        if trace is not None:
            trace["final_latents"] = latents
        # 5. Decode per frame
        video = self.decode(latents) if decode else None
        if trace is not None and video is not None:
            trace["video"] = video
        return latents, video
