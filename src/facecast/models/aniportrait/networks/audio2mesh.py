"""Audio2Mesh: speech → 468-vertex mesh offsets at 30 fps (docs/aniportrait.md §2).

wav2vec2 (video-rate variant) → `in_fn` Linear(hidden→latent) → `out_fn` Linear(latent→1404), no
nonlinearity in between; reshaped to (T, 468, 3) offsets added to the reference's metric mesh.
The whole utterance is encoded at once (global normalisation, bidirectional attention).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config

from facecast.models.aniportrait.networks.audio_model import AudioModel
from facecast.models.aniportrait.networks.wav2vec import EncoderStages, frame_count

NUM_VERTICES = 468


class Audio2Mesh(AudioModel):
    """AniPortrait's Audio2MeshModel. Key names equal the published audio2mesh.pt (after weight-norm mapping)."""

    config_section = "a2m_model"
    checkpoint_key = "a2m_ckpt"
    checkpoint_name = "audio2mesh.pt"
    size_defaults = {"latent_dim": 512, "out_dim": 3 * NUM_VERTICES}
    foreign_prefix = "transformer_decoder."

    def __init__(self, wav2vec2: Wav2Vec2Config, latent_dim: int = 512, out_dim: int = 1404) -> None:
        super().__init__(wav2vec2)
        if out_dim % 3:
            raise ValueError(f"out_dim must be 3 x vertices, got {out_dim}")
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
        x, samples = self.waveform_input(waveform_16k)
        out = self(x, frame_count(samples))[0]
        return out.float().cpu().numpy().reshape(out.shape[0], -1, 3)
