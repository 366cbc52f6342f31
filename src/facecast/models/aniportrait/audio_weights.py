"""Locating the audio models inside a weights folder of any accepted layout."""

from __future__ import annotations

from pathlib import Path

from facecast.models.aniportrait.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.audio2pose import Audio2Pose
from facecast.models.aniportrait.checkpoint import WeightsError


def audio_folder(weights: Path) -> tuple[Path, Path | None]:
    """(folder holding audio2mesh.pt & wav2vec2 config, inference_audio config or None).

    Accepts the published `pretrained_model/` tree or a conformance fixture folder (pretrained_model/ +
    configs/inference_audio.json with its model sizes).
    """
    weights = Path(weights)
    if not weights.is_dir():
        raise WeightsError(f"weights folder {weights} does not exist")
    if (weights / "pretrained_model").is_dir() and (weights / "configs").is_dir():
        config = weights / "configs" / "inference_audio.json"
        return weights / "pretrained_model", config if config.is_file() else None
    config = weights.parent / "configs" / "inference_audio.json"
    return weights, config if weights.name == "pretrained_model" and config.is_file() else None


def load_audio2mesh(weights: Path) -> Audio2Mesh:
    folder, config = audio_folder(weights)
    return Audio2Mesh.from_folder(folder, inference_config=config)


def load_audio2pose(weights: Path) -> Audio2Pose:
    folder, config = audio_folder(weights)
    return Audio2Pose.from_folder(folder, inference_config=config)
