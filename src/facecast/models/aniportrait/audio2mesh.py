"""Audio2Mesh: speech → 468-vertex mesh offsets at 30 fps (FACTS §2).

wav2vec2 (video-rate variant) → `in_fn` Linear(hidden→latent) → `out_fn` Linear(latent→1404), no
nonlinearity in between; reshaped to (T, 468, 3) offsets added to the reference's metric mesh.
The whole utterance is encoded at once (global normalisation, bidirectional attention).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config

from facecast.models.aniportrait.checkpoint import WeightsError, load_strict, read_state_dict
from facecast.models.aniportrait.wav2vec import (
    WAV2VEC2_FOLDER,
    EncoderStages,
    VideoRateWav2Vec2,
    frame_count,
    legacy_weight_norm_rename,
    min_samples,
    model_section,
    normalize_waveform,
    read_inference_config,
    wav2vec2_config,
)

A2M_CHECKPOINT = "audio2mesh.pt"
A2M_DEFAULTS = {"latent_dim": 512, "out_dim": 1404}
NUM_VERTICES = 468


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


def check_checkpoint_kind(state: dict[str, torch.Tensor], path: Path, own: str, other_marker: str) -> None:
    """A clearer error than a missing key when the file belongs to the other audio model."""
    if any(k.startswith(other_marker) for k in state):
        raise WeightsError(
            f"{path} is not an {own} checkpoint (it has '{other_marker}*' keys of another model)"
        )


class Audio2Mesh(nn.Module):
    """AniPortrait's Audio2MeshModel. Key names equal the published audio2mesh.pt (after weight-norm mapping)."""

    def __init__(self, wav2vec2: Wav2Vec2Config, latent_dim: int = 512, out_dim: int = 1404) -> None:
        super().__init__()
        if out_dim % 3:
            raise ValueError(f"out_dim must be 3 x vertices, got {out_dim}")
        self.audio_encoder = VideoRateWav2Vec2(wav2vec2)
        self.in_fn = nn.Linear(wav2vec2.hidden_size, latent_dim)
        self.out_fn = nn.Linear(latent_dim, out_dim)

    def forward(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:
        """input_values (B, n) normalised 16 kHz → offsets (B, seq_len, out_dim)."""
        return self.out_fn(self.in_fn(self.audio_encoder(input_values, seq_len)))

    def forward_stages(self, input_values: torch.Tensor, seq_len: int) -> tuple[EncoderStages, torch.Tensor]:
        """Encoder intermediates and the output (B, seq_len, out_dim), for conformance checks."""
        stages = self.audio_encoder.encode(input_values, seq_len)
        return stages, self.out_fn(self.in_fn(stages.last_hidden_state))

    @torch.no_grad()
    def infer(self, waveform_16k: np.ndarray) -> np.ndarray:
        """Mono 16 kHz waveform (n,) → vertex offsets (T, V, 3) float32, T = ceil(n / 16000 * 30)."""
        values = normalize_waveform(waveform_16k)
        need = min_samples(self.audio_encoder.config)
        if values.size < need:
            raise ValueError(f"audio too short: {values.size} samples, wav2vec2 needs at least {need}")
        param = next(self.parameters())
        x = torch.from_numpy(values)[None].to(device=param.device, dtype=param.dtype)
        out = self(x, frame_count(values.size))[0]
        return out.float().cpu().numpy().reshape(out.shape[0], -1, 3)

    def load_checkpoint(self, path: Path) -> None:
        """Load audio2mesh.pt strictly (legacy weight_g/weight_v mapped); WeightsError on any mismatch."""
        state = read_state_dict(path)
        check_checkpoint_kind(state, path, "Audio2Mesh", "transformer_decoder.")
        expected = set(self.state_dict())
        load_strict(self, state, source=str(path), rename=legacy_weight_norm_rename(expected))

    @classmethod
    def from_folder(
        cls, weights_dir: Path, *, inference_config: Path | None = None, checkpoint: Path | None = None
    ) -> Audio2Mesh:
        """Build from an AniPortrait `pretrained_model/` folder (FACTS §8) and load audio2mesh.pt.

        inference_config: AniPortrait's inference_audio.yaml/.json (latent_dim, out_dim, file names);
        without it the published sizes are used. The wav2vec2 folder supplies only its config.json.
        """
        config = read_inference_config(inference_config)
        w2v_dir, ckpt = resolve_weights_paths(
            weights_dir, dict(config), "a2m_model", "a2m_ckpt", A2M_CHECKPOINT
        )
        sizes = model_section(config, "a2m_model", A2M_DEFAULTS)
        model = cls(wav2vec2_config(w2v_dir), **sizes)
        model.load_checkpoint(checkpoint or ckpt)
        return model.eval()
