"""Locating and loading the audio models inside a weights folder of any accepted layout."""

from __future__ import annotations

from pathlib import Path

import torch

from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import Audio2Pose
from facecast.models.aniportrait.networks.checkpoint import WeightsError

AUDIO_CONFIG_NAMES = ("inference_audio.json", "inference_audio.yaml")


def resolve_audio_weights(weights: Path) -> tuple[Path, Path | None]:
    """(pretrained_model folder, inference_audio config or None) of the published `pretrained_model/` tree,
    a conformance fixture folder (pretrained_model/ + configs/ with the tiny sizes) or its pretrained_model/."""
    weights = Path(weights)
    if not weights.is_dir():
        raise WeightsError(f"weights folder {weights} does not exist")
    folder = weights / "pretrained_model" if (weights / "pretrained_model").is_dir() else weights
    for configs in (folder.parent / "configs", folder / "configs", folder):
        for name in AUDIO_CONFIG_NAMES:
            if (configs / name).is_file():
                return folder, configs / name
    return folder, None


def load_audio2pose(weights: Path, device: str | torch.device = "cpu") -> Audio2Pose:
    """Audio2Pose (fp32, eval) from a weights folder (see `resolve_audio_weights`); WeightsError if unusable."""
    folder, config = resolve_audio_weights(weights)
    return Audio2Pose.from_folder(folder, inference_config=config).to(device)


def load_audio2mesh(weights: Path, device: str | torch.device = "cpu") -> Audio2Mesh:
    """Audio2Mesh (fp32, eval) from a weights folder (see `resolve_audio_weights`); WeightsError if unusable."""
    folder, config = resolve_audio_weights(weights)
    return Audio2Mesh.from_folder(folder, inference_config=config).to(device)
