"""Loading the Lmk2Video networks from the published `pretrained_model/` tree or a converted folder.

Accepted folders (docs/aniportrait.md §8):
- published: reference_unet.pth, denoising_unet.pth, motion_module.pth, pose_guider.pth,
  stable-diffusion-v1-5/unet/config.json, sd-vae-ft-mse/, image_encoder/ (official constants);
- a conformance fixture's pretrained_model/ (or the fixture folder itself): the same, with the hard-coded
  constants taken from the fixture's configs/ (tiny_overrides.json, inference_v2.json, pose_guider.json);
- converted (`facecast weights convert`): facecast_arch.json + *.safetensors in the networks' own key names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from torch import nn
from transformers import CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from facecast.models.aniportrait.networks.arch import (
    ARCH_FILE,
    Lmk2VideoArch,
    arch_from_fixture_configs,
    official_arch,
    read_json,
)
from facecast.models.aniportrait.networks.checkpoint import WeightsError, load_strict, read_state_dict
from facecast.models.aniportrait.networks.pose_guider import PoseGuider
from facecast.models.aniportrait.networks.unets import build_denoising_unet, build_reference_unet

UNET_CONFIG = Path("stable-diffusion-v1-5/unet/config.json")
VAE_DIR = "sd-vae-ft-mse"
IMAGE_ENCODER_DIR = "image_encoder"
PUBLISHED_FILES = ("reference_unet.pth", "denoising_unet.pth", "motion_module.pth", "pose_guider.pth")
CONVERTED_FILES = ("reference_unet.safetensors", "denoising_unet.safetensors", "pose_guider.safetensors")


def rename_motion_key(key: str) -> str | None:
    """AnimateDiff motion_module.pth key → diffusers UNetMotionModel key (None: dropped).

    Drops `.temporal_transformer`; attention_blocks.0/1 → attn1/attn2; norms.0/1 → norm1/norm2;
    ff_norm → norm3. diffusers keeps one positional-encoding table per transformer block where AnimateDiff
    stores two identical ones: the first becomes `pos_embed.pe`, the second is dropped.
    """
    key = key.replace(".temporal_transformer.", ".")
    if key.endswith("attention_blocks.1.pos_encoder.pe"):
        return None
    key = key.replace("attention_blocks.0.pos_encoder.pe", "pos_embed.pe")
    key = re.sub(r"attention_blocks\.(\d+)\.", lambda m: f"attn{int(m.group(1)) + 1}.", key)
    key = re.sub(r"\.norms\.(\d+)\.", lambda m: f".norm{int(m.group(1)) + 1}.", key)
    return key.replace(".ff_norm.", ".norm3.")


@dataclass
class Lmk2VideoComponents:
    arch: Lmk2VideoArch
    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    reference_unet: UNet2DConditionModel
    denoising_unet: UNetMotionModel
    pose_guider: PoseGuider
    scheduler: DDIMScheduler


def resolve_weights(path: Path) -> tuple[str, Path, Lmk2VideoArch]:
    """(layout, folder holding the files, architecture) of a weights folder; WeightsError if it is none."""
    path = Path(path)
    if not path.is_dir():
        raise WeightsError(f"weights folder {path} does not exist")
    if (path / "pretrained_model").is_dir() and (path / "configs").is_dir():
        path = path / "pretrained_model"  # a conformance fixture folder
    if (path / ARCH_FILE).is_file():
        return "converted", path, Lmk2VideoArch.from_json(read_json(path / ARCH_FILE))
    for name in PUBLISHED_FILES:
        if not (path / name).is_file():
            raise WeightsError(
                f"{path} is not an AniPortrait weights folder: {name} is missing "
                f"(expected the published pretrained_model/ tree or a `facecast weights convert` folder)"
            )
    unet_config = read_json(path / UNET_CONFIG)
    fixture_configs = path.parent / "configs"
    if path.name == "pretrained_model" and (fixture_configs / "tiny_overrides.json").is_file():
        return "published", path, arch_from_fixture_configs(fixture_configs, unet_config)
    return "published", path, official_arch(unet_config)


def _materialise(module: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Allocate a meta-built module on `device` in `dtype` without random init (every tensor is then loaded)."""
    for name, param in list(module.named_parameters()):
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        empty = torch.empty(
            param.shape, device=device, dtype=dtype if param.is_floating_point() else param.dtype
        )
        setattr(owner, name.rpartition(".")[2], nn.Parameter(empty, requires_grad=False))
    for name, buffer in list(module.named_buffers()):
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        keep = dtype if buffer.is_floating_point() else buffer.dtype
        owner.register_buffer(name.rpartition(".")[2], torch.empty(buffer.shape, device=device, dtype=keep))


def _check_no_leftover_buffers(module: nn.Module, what: str) -> None:
    persistent = set(module.state_dict())
    leftover = [n for n, _ in module.named_buffers() if n not in persistent]
    if leftover:  # non-persistent buffers would be garbage after to_empty
        raise WeightsError(f"{what}: buffer {leftover[0]} is not loadable from a checkpoint")


def _load_networks(
    layout: str, folder: Path, arch: Lmk2VideoArch, device: torch.device, dtype: torch.dtype
) -> tuple[UNet2DConditionModel, UNetMotionModel, PoseGuider]:
    with torch.device("meta"):
        reference_unet = build_reference_unet(arch)
        denoising_unet = build_denoising_unet(arch)
        pose_guider = PoseGuider(arch.pose_guider)
    for module, what in (
        (reference_unet, "ReferenceNet"),
        (denoising_unet, "denoising UNet"),
        (pose_guider, "PoseGuider"),
    ):
        _check_no_leftover_buffers(module, what)
        _materialise(module, device, dtype)
    if layout == "converted":
        for module, name in zip((reference_unet, denoising_unet, pose_guider), CONVERTED_FILES, strict=True):
            load_strict(module, read_state_dict(folder / name), source=str(folder / name))
    else:
        load_strict(
            reference_unet, read_state_dict(folder / "reference_unet.pth"), source="reference_unet.pth"
        )
        load_strict(
            denoising_unet,
            read_state_dict(folder / "denoising_unet.pth"),
            source="denoising_unet.pth",
            ignore_missing=lambda k: ".motion_modules." in k,
        )
        load_strict(
            denoising_unet,
            read_state_dict(folder / "motion_module.pth"),
            source="motion_module.pth",
            rename=rename_motion_key,
            ignore_missing=lambda k: ".motion_modules." not in k,
        )
        load_strict(pose_guider, read_state_dict(folder / "pose_guider.pth"), source="pose_guider.pth")
    return reference_unet, denoising_unet, pose_guider


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_vae(folder: Path, dtype: torch.dtype) -> AutoencoderKL:
    if not folder.is_dir():
        raise WeightsError(f"VAE folder {folder} does not exist")
    try:  # low_cpu_mem_usage=False: no accelerate needed, no advice printed
        return AutoencoderKL.from_pretrained(
            str(folder), torch_dtype=dtype, local_files_only=True, low_cpu_mem_usage=False
        )
    except Exception as exc:  # missing weights file, bad config, shape mismatch...
        raise WeightsError(f"cannot load the VAE from {folder}: {_first_line(exc)}") from exc


def _load_image_encoder(folder: Path, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    if not folder.is_dir():
        raise WeightsError(f"image encoder folder {folder} does not exist")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the per-file "Loading weights" bar is noise in CLI output
    try:
        return CLIPVisionModelWithProjection.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load the image encoder from {folder}: {_first_line(exc)}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_lmk2video(
    path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Lmk2VideoComponents:
    """Every Lmk2Video component from a weights folder, on `device` in `dtype`, strictly checked.

    Train/eval state as upstream: the PoseGuider stays in train mode (batch-statistics BatchNorm).
    """
    layout, folder, arch = resolve_weights(Path(path))
    device = torch.device(device)
    vae_dir = folder / ("vae" if layout == "converted" else VAE_DIR)
    # the big checkpoints first: a wrong or partial folder fails before anything else loads
    reference_unet, denoising_unet, pose_guider = _load_networks(layout, folder, arch, device, dtype)
    vae = _load_vae(vae_dir, dtype)
    image_encoder = _load_image_encoder(folder / IMAGE_ENCODER_DIR, dtype)
    for module in (vae, image_encoder, reference_unet, denoising_unet):
        module.to(device).eval()
    pose_guider.train()
    try:
        scheduler = DDIMScheduler(**arch.scheduler)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"invalid scheduler settings {arch.scheduler}: {exc}") from exc
    return Lmk2VideoComponents(
        arch=arch,
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=scheduler,
    )
