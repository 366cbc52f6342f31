"""PoseGuider: drawn pose images → five multi-scale features added to the denoising UNet's main path."""

from __future__ import annotations

import torch
from diffusers.models import Transformer2DModel
from torch import nn

from facecast.models.aniportrait.networks.arch import PoseGuiderArch

# (in, out, kernel, stride) of the hard-coded conv stem; each conv is followed by BatchNorm2d + ReLU
_STEM = [(3, 3, 3, 1), (3, 16, 4, 2), (16, 16, 3, 1), (16, 32, 4, 2), (32, 32, 3, 1), (32, 64, 4, 2),
         (64, 64, 3, 1), (64, 128, 3, 1)]  # fmt: skip


def _conv_bn_relu(layers: list[tuple[int, int, int, int]]) -> nn.Sequential:
    modules: list[nn.Module] = []
    for c_in, c_out, kernel, stride in layers:
        modules += [
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]
    return nn.Sequential(*modules)


class PoseGuider(nn.Module):
    """Pose images (B, 3, F, H, W) → [fea0 (B, c, F, H/8, W/8), fea1 (/16), fea2 (2c, /32), fea3 (4c, /64),
    fea4 (4c, /64)] with c = noise_latent_channels (320 in the release).

    Its BatchNorm layers are meant to run on batch statistics (docs/aniportrait.md §6.1): the pipeline keeps
    this module in train mode. fea1..fea4 pass a self-attention-only Transformer2DModel each; the
    reference-pose input of the upstream class has no effect (docs/aniportrait.md §6.4) and is therefore not
    taken.
    """

    def __init__(self, arch: PoseGuiderArch) -> None:
        super().__init__()
        self.arch = arch
        c = arch.noise_latent_channels
        self.conv_layers = _conv_bn_relu(_STEM)
        self.final_proj = nn.Conv2d(128, c, kernel_size=1)
        self.scale = nn.Parameter(torch.tensor([2.0]))
        self.conv_layers_1 = _conv_bn_relu([(c, c, 3, 1), (c, c, 3, 2)])
        self.conv_layers_2 = _conv_bn_relu([(c, c, 3, 1), (c, 2 * c, 3, 2)])
        self.conv_layers_3 = _conv_bn_relu([(2 * c, 2 * c, 3, 1), (2 * c, 4 * c, 3, 2)])
        self.conv_layers_4 = _conv_bn_relu([(4 * c, 4 * c, 3, 1)])
        self.cross_attn1 = self._transformer(c)
        self.cross_attn2 = self._transformer(2 * c)
        self.cross_attn3 = self._transformer(4 * c)
        self.cross_attn4 = self._transformer(4 * c)

    def _transformer(self, channels: int) -> Transformer2DModel:
        return Transformer2DModel(
            num_attention_heads=self.arch.transformer_heads,
            attention_head_dim=self.arch.transformer_head_dim,
            in_channels=channels,
            norm_num_groups=self.arch.transformer_norm_groups,
        )

    def scale_input(self, pose_images: torch.Tensor) -> torch.Tensor:
        """uint8-valued pose pixels → network input: 2x-1 on raw values (the official quirk) or on x/255."""
        x = pose_images.to(self.final_proj.weight.dtype)
        if self.arch.input_scaling == "unit":
            x = x / 255.0
        elif self.arch.input_scaling != "uint8_quirk":
            raise ValueError(f"unknown pose input scaling {self.arch.input_scaling!r} (uint8_quirk or unit)")
        return 2.0 * x - 1.0

    def forward(self, pose: torch.Tensor) -> list[torch.Tensor]:
        """pose: (B, 3, F, H, W) already scaled (see scale_input) → five (B, C_i, F, h_i, w_i) features."""
        batch, _, frames = pose.shape[:3]
        x = pose.transpose(1, 2).flatten(0, 1)  # (B*F, 3, H, W): batch-major, frame-minor
        x = self.final_proj(self.conv_layers(x)) * self.scale
        features = [x]
        for conv, attn in (
            (self.conv_layers_1, self.cross_attn1),
            (self.conv_layers_2, self.cross_attn2),
            (self.conv_layers_3, self.cross_attn3),
            (self.conv_layers_4, self.cross_attn4),
        ):
            x = attn(conv(x), return_dict=False)[0]
            features.append(x)
        return [f.unflatten(0, (batch, frames)).transpose(1, 2) for f in features]
