"""The wav2vec2 front end shared by Audio2Mesh and Audio2Pose (docs/aniportrait.md §2, §7.4).

AniPortrait's quirk: the conv feature encoder runs at 50 Hz, and its output is linearly resampled
to the 30 fps video rate BEFORE the feature projection, positional conv and transformer, so every
encoder token is one video frame. The encoder attends over the whole clip (bidirectional).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2Model

from facecast.models.aniportrait.networks.checkpoint import WeightsError

SAMPLE_RATE = 16000
FPS = 30
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's variance epsilon
WAV2VEC2_FOLDER = "wav2vec2-base-960h"

# facebook/wav2vec2-base-960h: the architecture of the published audio models (their weights replace the folder's).
BASE_960H: dict[str, Any] = {
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "mask_time_prob": 0.05,
    "vocab_size": 32,
}


def frame_count(num_samples: int) -> int:
    """Video frames covering `num_samples` at 16 kHz: ceil(n / 16000 * 30), in upstream's float order."""
    return math.ceil(num_samples / SAMPLE_RATE * FPS)


def normalize_waveform(waveform_16k: np.ndarray) -> np.ndarray:
    """Whole-clip zero-mean / unit-variance: (x - mean) / sqrt(var + 1e-7), float32 like the feature extractor.

    waveform_16k: (n,) mono at 16 kHz. Returns (n,) float32 input values.
    """
    x = np.asarray(waveform_16k, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono waveform (n,), got shape {x.shape}")
    return np.asarray((x - x.mean()) / np.sqrt(x.var() + NORM_EPS), dtype=np.float32)


def wav2vec2_config(folder: Path | None) -> Wav2Vec2Config:
    """The wav2vec2 architecture: `folder/config.json` if given, else base-960h. Dropouts are irrelevant (eval)."""
    if folder is None:
        return Wav2Vec2Config(**BASE_960H)
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(f"wav2vec2 config {path} does not exist")
    try:
        return Wav2Vec2Config.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read wav2vec2 config {path}: {exc}") from exc


@dataclass(frozen=True)
class EncoderStages:
    """Intermediates of one encoder pass (batch B, conv channels C, conv frames T_conv, video frames T)."""

    conv_features: torch.Tensor  # (B, C, T_conv) conv feature encoder output
    interpolated: torch.Tensor  # (B, T, C) resampled to the video rate
    projected: torch.Tensor  # (B, T, hidden) feature projection output
    last_hidden_state: torch.Tensor  # (B, T, hidden)


class VideoRateWav2Vec2(Wav2Vec2Model):
    """Wav2Vec2Model whose conv features are resampled to `seq_len` frames before the transformer.

    Same parameters and key names as transformers' Wav2Vec2Model; only the forward differs.
    """

    def encode(self, input_values: torch.Tensor, seq_len: int) -> EncoderStages:
        """input_values (B, n) normalised 16 kHz audio → intermediates with T = seq_len."""
        conv = self.feature_extractor(input_values)  # (B, C, T_conv)
        interp = F.interpolate(conv, size=seq_len, mode="linear", align_corners=True).transpose(1, 2)
        projected, _ = self.feature_projection(interp)
        hidden = self.encoder(projected).last_hidden_state
        return EncoderStages(conv, interp, projected, hidden)

    def forward(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:  # type: ignore[override]
        """(B, n) → last hidden state (B, seq_len, hidden)."""
        return self.encode(input_values, seq_len).last_hidden_state


def min_samples(config: Wav2Vec2Config) -> int:
    """Fewest samples that give one conv frame (the receptive field: 400 for base-960h)."""
    field = 1
    for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride), strict=True):
        field = (field - 1) * stride + kernel
    return int(field)


def legacy_weight_norm_rename(expected_keys: set[str]) -> Any:
    """Map published `weight_g`/`weight_v` to torch ≥ 2.1's parametrization names where the model uses them."""

    def rename(key: str) -> str:
        for legacy, index in ((".weight_g", 0), (".weight_v", 1)):
            if key.endswith(legacy):
                modern = f"{key.removesuffix(legacy)}.parametrizations.weight.original{index}"
                if modern in expected_keys:
                    return modern
        return key

    return rename


def read_inference_config(path: Path | None) -> Mapping[str, Any]:
    """AniPortrait's configs/inference/inference_audio.yaml (or the fixtures' .json equivalent); {} when None."""
    if path is None:
        return {}
    if not path.is_file():
        raise WeightsError(f"audio inference config {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise WeightsError(f"cannot parse audio inference config {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise WeightsError(f"audio inference config {path} is not a mapping")
    return data


def model_section(config: Mapping[str, Any], section: str, defaults: Mapping[str, int]) -> dict[str, int]:
    """latent_dim / out_dim of `a2m_model` or `a2p_model`, falling back to the published values."""
    raw = config.get(section, {}) or {}
    out = dict(defaults)
    for key in defaults:
        if key in raw:
            out[key] = int(raw[key])
    return out
