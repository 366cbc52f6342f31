"""ReferenceNet and the denoising UNet3D, built from diffusers' UNet2DConditionModel / UNetMotionModel.

The denoising UNet is diffusers' `UNetMotionModel` (SD-1.5 blocks applied per frame plus 21 AnimateDiff motion
modules) with two AniPortrait differences: each motion module's GroupNorm normalises every frame on its own
(`PerFrameGroupNorm`, docs/aniportrait.md §4), and PoseGuider features are added to the main path by forward
hooks (`PoseFeatureHooks`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from facecast.models.aniportrait.networks.arch import Lmk2VideoArch

_UNET2D_KEYS = (
    "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
    "down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "downsample_padding",
    "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim",
    "attention_head_dim", "use_linear_projection", "upcast_attention", "only_cross_attention",
)  # fmt: skip


def _unet2d_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k in _UNET2D_KEYS}


class PerFrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C/G, H, W) of each frame of a (B, C, F, H, W) tensor (AnimateDiff's `(b f) c h w` norm).

    diffusers' motion modules normalise over frames too; same parameters, so the state dict is unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def build_reference_unet(arch: Lmk2VideoArch) -> UNet2DConditionModel:
    """SD-1.5 UNet2DConditionModel without conv_norm_out/conv_out: its output is the last up block's.

    Only its transformer blocks' norm1 outputs are used (the reference bank, see reference_attention.py).
    """
    unet = UNet2DConditionModel(**_unet2d_kwargs(arch.unet))
    unet.conv_norm_out = None
    unet.conv_act = None
    unet.conv_out = nn.Identity()
    return unet


def build_denoising_unet(arch: Lmk2VideoArch) -> UNetMotionModel:
    """UNet3D = SD-1.5 layout per frame + motion modules (8 down, 1 mid, 12 up for SD-1.5).

    forward: sample (B, C, F, h, w), timestep, encoder_hidden_states (B*F, 1, D) → (B, C, F, h, w).
    """
    cfg = _unet2d_kwargs(arch.unet)
    down = [
        "CrossAttnDownBlockMotion" if "CrossAttn" in t else "DownBlockMotion" for t in cfg["down_block_types"]
    ]
    up = ["CrossAttnUpBlockMotion" if "CrossAttn" in t else "UpBlockMotion" for t in cfg["up_block_types"]]
    unet = UNetMotionModel(
        sample_size=cfg.get("sample_size"),
        in_channels=cfg.get("in_channels", 4),
        out_channels=cfg.get("out_channels", 4),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg.get("layers_per_block", 2),
        downsample_padding=cfg.get("downsample_padding", 1),
        mid_block_scale_factor=cfg.get("mid_block_scale_factor", 1),
        act_fn=cfg.get("act_fn", "silu"),
        norm_num_groups=cfg.get("norm_num_groups", 32),
        norm_eps=cfg.get("norm_eps", 1e-5),
        cross_attention_dim=cfg["cross_attention_dim"],
        use_linear_projection=cfg.get("use_linear_projection", False),
        # legacy naming: "attention_head_dim" is really the head count (docs/aniportrait.md §6.7)
        num_attention_heads=cfg["attention_head_dim"],
        motion_max_seq_length=arch.motion_max_seq_length,
        motion_num_attention_heads=arch.motion_num_attention_heads,
        use_motion_mid_block=arch.motion_mid_block,
    )
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            old = module.norm
            module.norm = PerFrameGroupNorm(arch.motion_norm_num_groups, old.num_channels, eps=old.eps)
    return unet


class PoseFeatureHooks:
    """Adds PoseGuider features to the denoising UNet's main path via forward hooks.

    fea0 is added to the conv_in output (so it also reaches the first skip connection); fea_i (i ≥ 1) to the
    hidden states leaving down block i-1, not to that block's skips. Features are given per call through
    `features` as (B*F, C_i, h_i, w_i) in the UNet's batch-major frame order; None disables the hooks.
    """

    def __init__(self, unet: UNetMotionModel) -> None:
        self.features: list[torch.Tensor] | None = None
        self._handles = [unet.conv_in.register_forward_hook(self._add_to_conv_in)]
        for index, block in enumerate(unet.down_blocks):
            self._handles.append(block.register_forward_hook(self._down_hook(index + 1)))

    def _add_to_conv_in(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self.features is None:
            return None
        return output + self.features[0]

    def _down_hook(self, index: int) -> Any:
        def hook(module: nn.Module, args: Any, output: tuple[torch.Tensor, Any]) -> Any:
            if self.features is None:
                return None
            hidden, skips = output
            return hidden + self.features[index], skips

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
