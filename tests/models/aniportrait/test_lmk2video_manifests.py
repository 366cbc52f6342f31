"""Full-size networks built on the meta device have exactly the published checkpoints' keys and shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from facecast.models.aniportrait.networks.arch import SD15_UNET_CONFIG, official_arch
from facecast.models.aniportrait.networks.pose_guider import PoseGuider
from facecast.models.aniportrait.networks.unets import build_denoising_unet, build_reference_unet
from facecast.models.aniportrait.networks.weights import rename_motion_key


@pytest.fixture(scope="module")
def full_size() -> dict[str, nn.Module]:
    arch = official_arch(dict(SD15_UNET_CONFIG))
    with torch.device("meta"):
        return {
            "reference_unet": build_reference_unet(arch),
            "denoising_unet": build_denoising_unet(arch),
            "pose_guider": PoseGuider(arch.pose_guider),
        }


def manifest(shared_dir: Path, name: str) -> dict[str, list[int]]:
    return json.loads((shared_dir / "aniportrait" / "manifests" / f"{name}.json").read_text())


def shapes(module: nn.Module, keep: str | None = None, drop: str | None = None) -> dict[str, list[int]]:
    return {
        k: list(v.shape)
        for k, v in module.state_dict().items()
        if (keep is None or keep in k) and (drop is None or drop not in k)
    }


def renamed_motion(entries: dict[str, list[int]]) -> dict[str, list[int]]:
    out = {}
    for key, shape in entries.items():
        new = rename_motion_key(key)
        if new is not None:
            out[new] = shape
    return out


def test_reference_unet_matches_manifest(full_size: dict[str, nn.Module], shared_dir: Path) -> None:
    assert shapes(full_size["reference_unet"]) == manifest(shared_dir, "reference_unet")


def test_pose_guider_matches_manifest(full_size: dict[str, nn.Module], shared_dir: Path) -> None:
    assert shapes(full_size["pose_guider"]) == manifest(shared_dir, "pose_guider")


def test_denoising_unet_2d_part_matches_manifest(full_size: dict[str, nn.Module], shared_dir: Path) -> None:
    assert shapes(full_size["denoising_unet"], drop=".motion_modules.") == manifest(
        shared_dir, "denoising_unet"
    )


def test_motion_modules_match_manifest_after_rename(
    full_size: dict[str, nn.Module], shared_dir: Path
) -> None:
    published = manifest(shared_dir, "motion_module")
    assert len(published) == 588
    assert shapes(full_size["denoising_unet"], keep=".motion_modules.") == renamed_motion(published)
    modules = {
        k.split(".motion_modules.")[0] + "." + k.split(".motion_modules.")[1].split(".")[0] for k in published
    }
    assert len(modules) == 21  # 8 down, 1 mid, 12 up


def test_full_runtime_unet_matches_manifest(full_size: dict[str, nn.Module], shared_dir: Path) -> None:
    runtime = manifest(shared_dir, "denoising_unet_full_runtime")
    assert shapes(full_size["denoising_unet"]) == renamed_motion(runtime)


def test_motion_rename_rules() -> None:
    prefix = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0."
    assert rename_motion_key(prefix + "attention_blocks.1.to_k.weight") == (
        "up_blocks.1.motion_modules.2.transformer_blocks.0.attn2.to_k.weight"
    )
    assert (
        rename_motion_key(prefix + "norms.0.bias")
        == "up_blocks.1.motion_modules.2.transformer_blocks.0.norm1.bias"
    )
    assert (
        rename_motion_key(prefix + "ff_norm.weight")
        == "up_blocks.1.motion_modules.2.transformer_blocks.0.norm3.weight"
    )
    assert rename_motion_key(prefix + "attention_blocks.0.pos_encoder.pe").endswith(
        "transformer_blocks.0.pos_embed.pe"
    )
    assert rename_motion_key(prefix + "attention_blocks.1.pos_encoder.pe") is None


def test_no_buffer_escapes_the_checkpoint(full_size: dict[str, nn.Module]) -> None:
    # the loader allocates uninitialised memory and relies on the checkpoint filling every tensor
    for module in full_size.values():
        persistent = set(module.state_dict())
        assert [n for n, _ in module.named_buffers() if n not in persistent] == []
