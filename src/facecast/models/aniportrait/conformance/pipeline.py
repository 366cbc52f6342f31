"""Pipeline stages of `facecast aniportrait check`: a fixture's inputs → every recorded intermediate.

Everything comes from the fixture folder (README of fixtures/A): weights and configs from pretrained_model/ and
configs/, the call arguments from the recorded arrays (frames and size from the inputs, steps from the timesteps,
the guidance scale solved from the step-0 outputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facecast.models.aniportrait.conformance.stage_result import StageResult
from facecast.models.aniportrait.networks.weights import load_lmk2video
from facecast.models.aniportrait.pipeline.context_windows import context_windows
from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline, Trace

STAGE = "pipeline"
SINGLE_STAGE_TOL = 2e-5  # one network fed the fixture's own inputs (README: ~1e-5)
MULTI_STEP_TOL = 1e-4  # guided v, latents after DDIM steps, decoded video (docs/aniportrait.md §7.7)
REQUIRED = (
    "inputs/ref_image.png",
    "inputs/pose_images.npz",
    "inputs/init_noise.npz",
    "outputs/intermediates.npz",
    "outputs/pipeline_outputs.npz",
    "configs/inference_v2.json",
    "configs/tiny_overrides.json",
    "configs/pose_guider.json",
    "pretrained_model",
)
DEFAULT_GUIDANCE = 3.5


class FixtureFileMissing(FileNotFoundError):
    """A fixture folder lacks a file a stage needs (the message names it)."""


def _require(fixture_dir: Path) -> None:
    if not fixture_dir.is_dir():
        raise FixtureFileMissing(f"fixture folder {fixture_dir} does not exist")
    for rel in REQUIRED:
        if not (fixture_dir / rel).exists():
            raise FixtureFileMissing(f"fixture folder {fixture_dir} lacks {rel}")


def infer_guidance_scale(expected: dict[str, np.ndarray], size: int = 16, overlap: int = 4) -> float:
    """The fixture's CFG scale, solved from its step-0 window outputs and guided v (least squares).

    The fixture records uncond/cond UNet outputs per window and the guided v; the scale is not stored
    anywhere else, and other fixtures may use another one.
    """
    guided = expected.get("step0_v_pred_guided")
    if guided is None or "step0_window0_unet_out" not in expected:
        return DEFAULT_GUIDANCE
    frames = guided.shape[2]
    total = np.zeros((2, *guided.shape[1:]), dtype=np.float64)
    count = np.zeros((frames,), dtype=np.float64)
    for k, window in enumerate(context_windows(frames, size, overlap)):
        out = expected.get(f"step0_window{k}_unet_out")
        if out is None or out.shape[0] != 2:
            return DEFAULT_GUIDANCE
        total[:, :, window] += out
        count[window] += 1
    uncond, cond = total / count[None, None, :, None, None]
    diff = (cond - uncond).ravel()
    denom = float(diff @ diff)
    if denom == 0.0:
        return DEFAULT_GUIDANCE
    scale = float((guided[0] - uncond).ravel() @ diff / denom)
    return round(scale, 3)


def _expected_key(name: str, expected: dict[str, np.ndarray]) -> str | None:
    if name in expected:
        return name
    if name.startswith("refbank__"):  # fixture keys carry a pairing index: refbank_07__<block>
        block = name[len("refbank__") :]
        matches = [k for k in expected if k.startswith("refbank_") and k.endswith(f"__{block}")]
        return matches[0] if matches else None
    return None


def _tolerance(name: str) -> float:
    multi = ("v_pred_guided", "latents_in", "final_latents", "video")
    return MULTI_STEP_TOL if any(tag in name for tag in multi) else SINGLE_STAGE_TOL


def compare_trace(trace: Trace, expected: dict[str, np.ndarray]) -> list[StageResult]:
    """One StageResult per fixture intermediate (missing from the trace = infinite error)."""
    results = []
    produced = {}
    for name, tensor in trace.items():
        key = _expected_key(name, expected)
        if key is not None:
            produced[key] = tensor.detach().to("cpu", torch.float64).numpy()
    for key, want in expected.items():
        if key.endswith("_pose_cond_input_minmax") or key == "scheduler_final_alpha_cumprod":
            continue  # checked through their consumers (PoseGuider features, the DDIM updates)
        got = produced.get(key)
        if got is None or got.shape != want.shape:
            note = "not produced" if got is None else f"shape {got.shape} != {want.shape}"
            results.append(StageResult(STAGE, key, float("inf"), _tolerance(key), note))
            continue
        err = float(np.max(np.abs(got - want.astype(np.float64)))) if want.size else 0.0
        results.append(StageResult(STAGE, key, err, _tolerance(key)))
    return results


def _load_pipeline(fixture_dir: Path) -> Lmk2VideoPipeline:
    components = load_lmk2video(fixture_dir, device="cpu", dtype=torch.float32)
    return Lmk2VideoPipeline(
        components.arch,
        components.vae,
        components.image_encoder,
        components.reference_unet,
        components.denoising_unet,
        components.pose_guider,
        components.scheduler,
    )


def run_fixture_pipeline(
    pipe: Lmk2VideoPipeline, fixture_dir: Path, expected: dict[str, np.ndarray]
) -> Trace:
    """The exact pipeline end to end on a fixture's inputs; returns every recorded intermediate."""
    ref_image = Image.open(fixture_dir / "inputs" / "ref_image.png").convert("RGB")
    pose_images = np.load(fixture_dir / "inputs" / "pose_images.npz")["pose_images"]
    noise = torch.from_numpy(np.load(fixture_dir / "inputs" / "init_noise.npz")["init_noise"])
    trace: Trace = {}
    pipe(
        ref_image,
        pose_images,
        num_inference_steps=int(expected["scheduler_timesteps"].shape[0]),
        guidance_scale=infer_guidance_scale(expected),
        latents=noise,
        exact=True,
        trace=trace,
    )
    return trace


@torch.no_grad()
def run_isolated_stages(pipe: Lmk2VideoPipeline, fixture_dir: Path, expected: dict[str, np.ndarray]) -> Trace:
    """Single networks fed with the fixture's own inputs (docs/aniportrait.md §7.3), so errors do not
    accumulate.

    VAE encoder on the recorded preprocessed image; ReferenceNet on the recorded latents and CLIP embedding;
    each window's UNet call on the recorded noise, PoseGuider features and (fp16-rounded) bank.
    """

    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(expected[key]))

    trace: Trace = {}
    mean = pipe.vae.encode(tensor("vae_encode_input")).latent_dist.mean
    trace["ref_latent_dist_mean"] = mean
    trace["ref_image_latents"] = tensor("ref_latent_dist_mean") * pipe.arch.vae_latent_scale
    clip = tensor("clip_image_embeds")
    pipe.build_reference_bank(tensor("ref_image_latents"), clip, exact=True, trace=trace)
    pipe.reference.bank = {}
    for key in expected:
        if key.startswith("refbank_"):
            block = key.split("__", 1)[1]
            pipe.reference.bank[block] = tensor(key)[-1:].to(torch.float16).to(torch.float32)
    noise = tensor("init_noise")
    frames = noise.shape[2]
    states = torch.cat([torch.zeros_like(clip), clip]).unsqueeze(1)
    t = tensor("scheduler_timesteps")[0]
    windows = context_windows(frames, pipe.arch.context_frames, pipe.arch.context_overlap)
    for k, window in enumerate(windows):
        if f"step0_window{k}_unet_out" not in expected:
            continue
        features = [tensor(f"step0_window{k}_posefea{j}").repeat(2, 1, 1, 1, 1) for j in range(5)]
        sample = noise[:, :, window].repeat(2, 1, 1, 1, 1)
        rows = torch.tensor([False, True])
        trace[f"step0_window{k}_unet_out"] = pipe.denoise_window(sample, t, states, features, rows)
    return trace


ISOLATED = ("ref_latent_dist_mean", "ref_image_latents", "refbank__", "_unet_out")


def check_pipeline(fixture_dir: Path) -> list[StageResult]:
    """Every pipeline intermediate and output of the fixture against this implementation (CPU fp32).

    Single-network tensors are checked stage-isolated, the DDIM loop's tensors end to end.
    """
    fixture_dir = Path(fixture_dir)
    _require(fixture_dir)
    expected = dict(np.load(fixture_dir / "outputs" / "intermediates.npz"))
    expected.update(np.load(fixture_dir / "outputs" / "pipeline_outputs.npz"))
    pipe = _load_pipeline(fixture_dir)
    trace = run_fixture_pipeline(pipe, fixture_dir, expected)
    expected["init_noise"] = np.load(fixture_dir / "inputs" / "init_noise.npz")["init_noise"]
    isolated = run_isolated_stages(pipe, fixture_dir, expected)
    del expected["init_noise"]
    trace = {k: v for k, v in trace.items() if not any(tag in k for tag in ISOLATED)}
    results = compare_trace({**trace, **isolated}, expected)
    return [
        StageResult(r.stage, r.name, r.max_abs_error, r.tolerance, r.note or _how(r.name)) for r in results
    ]


def _how(name: str) -> str:
    return "isolated" if any(tag.strip("_") in name for tag in ISOLATED) else ""
