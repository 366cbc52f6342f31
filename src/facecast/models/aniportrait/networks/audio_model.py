"""What Audio2Mesh and Audio2Pose share: a video-rate wav2vec2 encoder plus a head, built and loaded from
AniPortrait's `pretrained_model/` folder, fed a whole normalised clip."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config

from facecast.models.aniportrait.networks.checkpoint import WeightsError, load_strict, read_state_dict
from facecast.models.aniportrait.networks.wav2vec import (
    WAV2VEC2_FOLDER,
    VideoRateWav2Vec2,
    legacy_weight_norm_rename,
    min_samples,
    model_section,
    normalize_waveform,
    read_inference_config,
    wav2vec2_config,
)


def resolve_weights_paths(
    weights_dir: Path, config: Mapping[str, Any], section: str, ckpt_key: str, default_ckpt: str
) -> tuple[Path, Path]:
    """(wav2vec2 folder, checkpoint) inside weights_dir; config paths contribute only their last component.

    Upstream's paths are relative to its working directory (`./pretrained_model/...`), so only the
    names are meaningful once the folder is given explicitly.
    """
    model_path = (config.get(section) or {}).get("model_path", WAV2VEC2_FOLDER)
    ckpt = (config.get("pretrained_model") or {}).get(ckpt_key, default_ckpt)
    return weights_dir / Path(str(model_path)).name, weights_dir / Path(str(ckpt)).name


class AudioModel(nn.Module):
    """Base of the audio models. Subclasses name their inference-config section, checkpoint and sizes, and
    take (wav2vec2 config, latent_dim=..., out_dim=...) in their constructor."""

    config_section: ClassVar[str]  # "a2m_model" / "a2p_model" in inference_audio.yaml
    checkpoint_key: ClassVar[str]  # "a2m_ckpt" / "a2p_ckpt" under its `pretrained_model`
    checkpoint_name: ClassVar[str]  # the published file name
    size_defaults: ClassVar[Mapping[str, int]]  # the published latent_dim / out_dim
    foreign_prefix: ClassVar[str]  # a key prefix only the other audio model has (a clearer error)
    audio_encoder: VideoRateWav2Vec2

    def __init__(self, wav2vec2: Wav2Vec2Config) -> None:
        super().__init__()
        self.audio_encoder = VideoRateWav2Vec2(wav2vec2)

    def waveform_input(self, waveform_16k: np.ndarray) -> tuple[torch.Tensor, int]:
        """Mono 16 kHz waveform (n,) → (normalised (1, n) on the model's device and dtype, n); too short: ValueError."""
        values = normalize_waveform(waveform_16k)
        need = min_samples(self.audio_encoder.config)
        if values.size < need:
            raise ValueError(f"audio too short: {values.size} samples, wav2vec2 needs at least {need}")
        param = next(self.parameters())
        return torch.from_numpy(values)[None].to(device=param.device, dtype=param.dtype), values.size

    def load_checkpoint(self, path: Path) -> None:
        """Load the checkpoint strictly (legacy weight_g/weight_v mapped); WeightsError on any mismatch."""
        state = read_state_dict(path)
        if any(k.startswith(self.foreign_prefix) for k in state):
            raise WeightsError(
                f"{path} is not an {type(self).__name__} checkpoint "
                f"(it has '{self.foreign_prefix}*' keys of another model)"
            )
        expected = set(self.state_dict())
        load_strict(self, state, source=str(path), rename=legacy_weight_norm_rename(expected))

    @classmethod
    def from_folder(
        cls, weights_dir: Path, *, inference_config: Path | None = None, checkpoint: Path | None = None
    ) -> Self:
        """Build from an AniPortrait `pretrained_model/` folder (docs/aniportrait.md §8) and load the
        checkpoint.

        inference_config: AniPortrait's inference_audio.yaml/.json (latent_dim, out_dim, file names);
        without it the published sizes are used. The wav2vec2 folder supplies only its config.json.
        """
        config = read_inference_config(inference_config)
        w2v_dir, ckpt = resolve_weights_paths(
            weights_dir, dict(config), cls.config_section, cls.checkpoint_key, cls.checkpoint_name
        )
        model = cls(wav2vec2_config(w2v_dir), **model_section(config, cls.config_section, cls.size_defaults))
        model.load_checkpoint(checkpoint or ckpt)
        return model.eval()
