"""Building blocks of Lmk2Video on tiny random networks: windows, norms, hooks, reference attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from facecast.models.aniportrait.networks.arch import Lmk2VideoArch, PoseGuiderArch
from facecast.models.aniportrait.networks.pose_guider import PoseGuider
from facecast.models.aniportrait.networks.reference_attention import ReferenceAttnProcessor, ReferenceState
from facecast.models.aniportrait.networks.unets import (
    PerFrameGroupNorm,
    PoseFeatureHooks,
    build_denoising_unet,
)
from facecast.models.aniportrait.pipeline.context_windows import context_windows

TINY_UNET = {
    "block_out_channels": [4, 8, 8, 8],
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "cross_attention_dim": 8,
    "attention_head_dim": 2,
}


def test_windows_closed_loop_wrap() -> None:
    assert context_windows(24) == [list(range(16)), list(range(12, 24)) + [0, 1, 2, 3]]
    assert context_windows(30) == [list(range(16)), list(range(12, 28)), [24, 25, 26, 27, 28, 29, *range(10)]]
    assert context_windows(10) == [list(range(10))]
    assert context_windows(30, closed_loop=False) == context_windows(30)[:3]
    assert context_windows(40, closed_loop=False)[-1][-1] == 39
    with pytest.raises(ValueError):
        context_windows(0)


def test_per_frame_group_norm_normalises_each_frame_alone() -> None:
    norm = PerFrameGroupNorm(2, 4, eps=1e-6)
    x = torch.randn(2, 4, 3, 5, 5)
    x[:, :, 1] *= 10  # a loud frame must not change the others
    out = norm(x)
    for f in range(3):
        torch.testing.assert_close(out[:, :, f], F.group_norm(x[:, :, f], 2, norm.weight, norm.bias, 1e-6))
    assert not torch.allclose(out, F.group_norm(x, 2, norm.weight, norm.bias, 1e-6), atol=1e-3)


def test_pose_input_scaling_quirk_and_corrected() -> None:
    pixels = torch.tensor([0.0, 255.0])
    quirk = PoseGuider(
        PoseGuiderArch(noise_latent_channels=4, transformer_head_dim=2, transformer_norm_groups=1)
    )
    assert quirk.scale_input(pixels).tolist() == [-1.0, 509.0]
    unit = PoseGuider(
        PoseGuiderArch(
            noise_latent_channels=4, transformer_head_dim=2, transformer_norm_groups=1, input_scaling="unit"
        )
    )
    assert unit.scale_input(pixels).tolist() == [-1.0, 1.0]


def test_pose_guider_uses_batch_statistics() -> None:
    torch.manual_seed(0)
    guider = PoseGuider(
        PoseGuiderArch(noise_latent_channels=4, transformer_head_dim=2, transformer_norm_groups=1)
    )
    guider.train()
    pose = torch.rand(1, 3, 4, 64, 64) * 400
    with torch.no_grad():
        alone = guider(pose[:, :, :2])[0]
        together = guider(pose)[0][:, :, :2]
        duplicated = guider(pose.repeat(2, 1, 1, 1, 1))[0][:1]
    assert not torch.allclose(alone, together, atol=1e-4)  # frames share their window's statistics
    torch.testing.assert_close(duplicated, guider(pose)[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    arch = Lmk2VideoArch(unet=TINY_UNET, motion_num_attention_heads=2, motion_norm_num_groups=2)
    return build_denoising_unet(arch).eval()


def test_motion_modules_use_per_frame_norm(tiny_unet: torch.nn.Module) -> None:
    norms = [m for name, m in tiny_unet.named_modules() if name.endswith("motion_modules.0.norm")]
    assert norms and all(isinstance(n, PerFrameGroupNorm) for n in norms)


def test_pose_features_go_to_main_path_not_skips(tiny_unet: torch.nn.Module) -> None:
    hooks = PoseFeatureHooks(tiny_unet)
    captured: list[tuple[torch.Tensor, ...]] = []
    handle = tiny_unet.down_blocks[1].register_forward_hook(lambda m, a, out: captured.append(out))
    sample = torch.randn(1, 4, 2, 16, 16)
    states = torch.randn(2, 1, 8)
    shapes = [(4, 16, 16), (4, 8, 8), (8, 4, 4), (8, 2, 2), (8, 2, 2)]
    try:
        with torch.no_grad():
            plain = tiny_unet(sample, 10, encoder_hidden_states=states).sample
            hooks.features = [torch.zeros(2, *s) for s in shapes]
            zero = tiny_unet(sample, 10, encoder_hidden_states=states).sample
            hooks.features[2] = torch.ones(2, *shapes[2])
            added = tiny_unet(sample, 10, encoder_hidden_states=states).sample
    finally:
        hooks.features = None
        hooks.remove()
        handle.remove()
    torch.testing.assert_close(plain, zero)
    assert not torch.allclose(plain, added)
    hidden, skips = captured[
        -1
    ]  # the hooked output of down block 1: the main path carries fea2, skips do not
    _, skips_plain = captured[0]
    torch.testing.assert_close(skips[-1], skips_plain[-1])
    torch.testing.assert_close(hidden, skips_plain[-1] + 1.0)


def test_reference_processor() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, bias=False)
    state = ReferenceState()
    attn.set_processor(ReferenceAttnProcessor("block", state))
    x = torch.randn(4, 6, 8)  # 2 (uncond, cond) x 2 frames, 6 tokens
    bank = torch.randn(1, 5, 8)
    with torch.no_grad():
        plain = AttnProcessor2_0()(attn, x)
        torch.testing.assert_close(attn(x), plain)  # no rows flagged: plain self-attention
        state.bank = {"block": bank}
        state.reference_rows = torch.tensor([False, False, True, True])
        mixed = attn(x)
        kv = torch.cat([x, bank.expand(4, -1, -1)], dim=1)
        with_ref = AttnProcessor2_0()(attn, x, encoder_hidden_states=kv)
        state.upstream_schedule = True  # upstream's order of work: reference for all rows, then uncond redone
        upstream = attn(x)
    torch.testing.assert_close(mixed[:2], plain[:2])
    torch.testing.assert_close(mixed[2:], with_ref[2:])
    assert not torch.allclose(mixed[2:], plain[2:])
    torch.testing.assert_close(upstream, mixed)
