"""Architecture settings of the Lmk2Video networks: everything AniPortrait hard-codes, read from configuration.

The published release ships only the SD-1.5 UNet config (`stable-diffusion-v1-5/unet/config.json`); the
motion-module, PoseGuider and scheduler settings live in AniPortrait's code and `inference_v2.yaml`. Their
official values are the defaults here; a conformance fixture (or a converted folder's `facecast_arch.json`)
overrides them (docs/aniportrait.md §6.8).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facecast.models.aniportrait.networks.checkpoint import WeightsError

ARCH_FILE = "facecast_arch.json"  # written by `facecast weights convert`

# inference_v2.yaml noise_scheduler_kwargs (docs/aniportrait.md §4)
DEFAULT_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


@dataclass
class PoseGuiderArch:
    noise_latent_channels: int = 320
    transformer_heads: int = 16
    transformer_head_dim: int = 88
    transformer_norm_groups: int = 32
    # The official inference path maps uint8 pose pixels by 2x-1 without /255, to [-1, 509]
    # (docs/aniportrait.md §6.2).
    # "unit" is the corrected [-1, 1] scaling the network was trained with.
    input_scaling: str = "uint8_quirk"


@dataclass
class Lmk2VideoArch:
    """Everything needed to build the Lmk2Video networks besides the weights."""

    unet: dict[str, Any]  # SD-1.5 UNet2DConditionModel config (attention_head_dim = number of heads)
    motion_num_attention_heads: int = 8
    motion_max_seq_length: int = 32
    motion_norm_num_groups: int = 32
    motion_mid_block: bool = True
    pose_guider: PoseGuiderArch = field(default_factory=PoseGuiderArch)
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SCHEDULER))
    vae_latent_scale: float = 0.18215  # hard-coded upstream, not vae.config.scaling_factor
    context_frames: int = 16
    context_overlap: int = 4

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lmk2VideoArch:
        data = dict(data)
        pose = PoseGuiderArch(**data.pop("pose_guider", {}))
        return cls(pose_guider=pose, **data)


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"config file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"config file {path} is not a JSON object")
    return data


def arch_from_fixture_configs(configs_dir: Path, unet_config: dict[str, Any]) -> Lmk2VideoArch:
    """Settings of a conformance-fixture folder (its configs/ overrides the hard-coded constants)."""
    inference = read_json(configs_dir / "inference_v2.json")
    overrides = read_json(configs_dir / "tiny_overrides.json")["overridden_hardcoded_constants"]
    pose_cfg = read_json(configs_dir / "pose_guider.json")
    unet_kwargs = inference.get("unet_additional_kwargs", {})
    motion_kwargs = unet_kwargs.get("motion_module_kwargs", {})
    return Lmk2VideoArch(
        unet=unet_config,
        motion_num_attention_heads=int(motion_kwargs.get("num_attention_heads", 8)),
        motion_max_seq_length=int(motion_kwargs.get("temporal_position_encoding_max_len", 32)),
        motion_norm_num_groups=int(
            overrides.get("motion_module.TemporalTransformer3DModel.norm_num_groups", 32)
        ),
        motion_mid_block=bool(unet_kwargs.get("motion_module_mid_block", True)),
        pose_guider=PoseGuiderArch(
            noise_latent_channels=int(pose_cfg.get("noise_latent_channels", 320)),
            transformer_heads=int(overrides.get("pose_guider.Transformer2DModel.num_attention_heads", 16)),
            transformer_head_dim=int(overrides.get("pose_guider.Transformer2DModel.attention_head_dim", 88)),
            transformer_norm_groups=int(overrides.get("pose_guider.Transformer2DModel.norm_num_groups", 32)),
        ),
        scheduler=dict(inference.get("noise_scheduler_kwargs", DEFAULT_SCHEDULER)),
    )


def official_arch(unet_config: dict[str, Any]) -> Lmk2VideoArch:
    """The published release's settings (docs/aniportrait.md §4) around its SD-1.5 UNet config."""
    return Lmk2VideoArch(
        unet=unet_config,
        pose_guider=PoseGuiderArch(noise_latent_channels=unet_config["block_out_channels"][0]),
    )


# SD-1.5 unet/config.json: used by the full-size meta-device build and the GPU benchmark.
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
