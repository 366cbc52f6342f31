"""Audio2Pose: speech → 6-D head pose per video frame (docs/aniportrait.md §2, docs/aniportrait.md §7.4,
§7.6).

Per 5 s chunk: wav2vec2 (video-rate variant) → `in_fn` → memory; an 8-layer TransformerDecoder
generates poses autoregressively from a zero pose. Step k feeds the whole prefix
[pose_map(0) + style, pose_map(p_0) + style, …] plus a sinusoidal position encoding, with a causal
self-attention mask carrying an ALiBi linear distance bias (-slope_h · (i - j)) and a memory mask
letting position i see only audio frame i. Output p_k = pose_map_r(decoder output at k), as
[rx, ry, rz (deg, scipy "xyz"), tx, ty, tz] relative to the reference pose. `decode` computes the same
function with cached keys/values (see its docstring); `decode_full_prefix` is upstream's re-run.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2Config

from facecast.models.aniportrait.networks.audio_model import AudioModel
from facecast.models.aniportrait.networks.wav2vec import (
    FPS,
    SAMPLE_RATE,
    frame_count,
)

POSE_DIM = 6
NUM_HEADS = 8  # hard-coded upstream
NUM_LAYERS = 8  # hard-coded upstream
NUM_STYLES = 100
PE_MAX_LEN = 600
CHUNK_SECONDS = 5
CHUNK_FRAMES = CHUNK_SECONDS * FPS
ROTATION_SCALE = 0.5  # audio2vid halves the predicted rotation
SMOOTH_WINDOW = 7


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes: 2^(-8/n · (h+1)) for a power-of-two n, the paper's interleave otherwise. (n,)"""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start ** (h + 1) for h in range(n)]

    if math.log2(num_heads).is_integer():
        return torch.tensor(power_of_two(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = alibi_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.cat([torch.tensor(power_of_two(closest)), extra])


def causal_alibi_mask(length: int, num_heads: int) -> torch.Tensor:
    """Additive self-attention mask (heads, T, T): -slope_h · (i - j) for j ≤ i, -inf for j > i."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    bias = -alibi_slopes(num_heads)[:, None, None] * (i - j).float()
    return bias.masked_fill((j > i)[None], float("-inf"))


def single_key_cross_attention(attn: nn.MultiheadAttention, memory: torch.Tensor) -> torch.Tensor:
    """Cross-attention output when step i may see only memory frame i: out_proj(v_proj(memory)). (1, T, d)"""
    dim = memory.shape[-1]
    value = F.linear(memory, attn.in_proj_weight[2 * dim :], attn.in_proj_bias[2 * dim :])
    return cast(torch.Tensor, attn.out_proj(value))


def diagonal_memory_mask(length: int, memory_length: int) -> torch.Tensor:
    """Boolean memory mask (T, S), True = blocked: target step i attends only to audio frame i."""
    return ~torch.eye(length, memory_length, dtype=torch.bool)


class SinusoidalPositionalEncoding(nn.Module):
    """x + pe[:T], pe interleaving sin (even channels) and cos (odd); stored as `pe` (1, max_len, d) as published."""

    pe: torch.Tensor

    def __init__(self, dim: int, max_len: int = PE_MAX_LEN) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) → (B, T, d)."""
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"sequence of {x.shape[1]} frames exceeds the position encoding ({self.pe.shape[1]})"
            )
        return x + self.pe[:, : x.shape[1]]


def chunk_bounds(num_samples: int) -> list[tuple[int, int, int]]:
    """(start_sample, end_sample, frames) per 5 s chunk; a final remainder joins the last full chunk.

    Frames add up to frame_count(num_samples). Unlike upstream this also works below 5 s and at exact
    multiples of 5 s.
    """
    total = frame_count(num_samples)
    chunk_samples = CHUNK_SECONDS * SAMPLE_RATE
    full = max(1, num_samples // chunk_samples)
    bounds = [(k * chunk_samples, (k + 1) * chunk_samples, CHUNK_FRAMES) for k in range(full - 1)]
    start = (full - 1) * chunk_samples
    bounds.append((start, num_samples, total - (full - 1) * CHUNK_FRAMES))
    return bounds


class Audio2Pose(AudioModel):
    """AniPortrait's Audio2PoseModel. Key names equal the published audio2pose.pt (after weight-norm mapping)."""

    config_section = "a2p_model"
    checkpoint_key = "a2p_ckpt"
    checkpoint_name = "audio2pose.pt"
    size_defaults = {"latent_dim": 512, "out_dim": POSE_DIM}
    foreign_prefix = "out_fn."

    def __init__(
        self,
        wav2vec2: Wav2Vec2Config,
        latent_dim: int = 512,
        out_dim: int = POSE_DIM,
        num_heads: int = NUM_HEADS,
        num_layers: int = NUM_LAYERS,
    ) -> None:
        super().__init__(wav2vec2)
        self.num_heads = num_heads
        self.in_fn = nn.Linear(wav2vec2.hidden_size, latent_dim)
        self.pose_map = nn.Linear(out_dim, latent_dim)
        self.PPE = SinusoidalPositionalEncoding(latent_dim)
        layer = nn.TransformerDecoderLayer(latent_dim, num_heads, 2 * latent_dim, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, num_layers)
        self.pose_map_r = nn.Linear(latent_dim, out_dim)
        self.id_embed = nn.Embedding(NUM_STYLES, latent_dim)

    def decode(self, memory: torch.Tensor, style_id: int) -> torch.Tensor:
        """Autoregressive decoding of one chunk: memory (1, T, latent) → poses (1, T, out_dim).

        Upstream re-runs the whole prefix through the decoder at every step. With a causal self-attention
        mask nothing computed for earlier positions changes, so this keeps each layer's keys/values and
        computes only the new position: the same function in O(T²) instead of O(T³) (equal to the
        re-run to float rounding, ~1e-7). With the diagonal memory mask the cross-attention of step i
        has a single unmasked key, a softmax weight of exactly 1: its output is out_proj(v_proj(memory_i)).
        Inference only (dropout is not applied).
        """
        if not 0 <= style_id < self.id_embed.num_embeddings:
            raise ValueError(f"style_id must be in [0, {self.id_embed.num_embeddings}), got {style_id}")
        length, dim = memory.shape[1], memory.shape[2]
        if length > self.PPE.pe.shape[1]:
            raise ValueError(
                f"chunk of {length} frames exceeds the position encoding ({self.PPE.pe.shape[1]})"
            )
        heads, head_dim = self.num_heads, dim // self.num_heads
        layers = [cast(nn.TransformerDecoderLayer, layer) for layer in self.transformer_decoder.layers]
        cross = [single_key_cross_attention(layer.multihead_attn, memory) for layer in layers]
        keys = [memory.new_zeros(1, heads, length, head_dim) for _ in layers]
        values = [memory.new_zeros(1, heads, length, head_dim) for _ in layers]
        slopes = alibi_slopes(heads).to(memory)
        style = self.id_embed(torch.tensor([style_id], device=memory.device))[:, None]  # (1, 1, latent)
        step_input = self.pose_map(memory.new_zeros(1, 1, self.pose_map.in_features)) + style
        poses = []
        for step in range(length):
            hidden = step_input + self.PPE.pe[:, step : step + 1]
            distance = torch.arange(step, -1, -1, device=memory.device, dtype=memory.dtype)  # i - j, j = 0..i
            bias = (-slopes[:, None] * distance)[None, :, None, :]  # (1, heads, 1, step + 1)
            for index, layer in enumerate(layers):
                attn = layer.self_attn
                q, k, v = (
                    F.linear(hidden, attn.in_proj_weight, attn.in_proj_bias)
                    .view(1, 3, heads, head_dim)
                    .unbind(1)
                )
                keys[index][:, :, step] = k
                values[index][:, :, step] = v
                out = F.scaled_dot_product_attention(
                    q[:, :, None],
                    keys[index][:, :, : step + 1],
                    values[index][:, :, : step + 1],
                    attn_mask=bias,
                )
                hidden = layer.norm1(hidden + attn.out_proj(out.reshape(1, 1, dim)))
                hidden = layer.norm2(hidden + cross[index][:, step : step + 1])
                hidden = layer.norm3(hidden + layer.linear2(F.relu(layer.linear1(hidden))))
            pose = self.pose_map_r(hidden)  # (1, 1, out_dim)
            poses.append(pose)
            step_input = self.pose_map(pose) + style
        return torch.cat(poses, dim=1)

    def decode_full_prefix(self, memory: torch.Tensor, style_id: int) -> torch.Tensor:
        """Upstream's algorithm, kept as the reference for `decode`: the whole prefix through
        nn.TransformerDecoder with explicit masks at every step. (1, T, latent) → (1, T, out_dim); O(T³).
        """
        length = memory.shape[1]
        style = self.id_embed(torch.tensor([style_id], device=memory.device))[:, None]
        inputs = self.pose_map(memory.new_zeros(1, 1, self.pose_map.in_features)) + style
        self_mask = causal_alibi_mask(length, self.num_heads).to(memory)
        memory_mask = diagonal_memory_mask(length, length).to(memory.device)
        poses = inputs.new_zeros(1, 0, self.pose_map_r.out_features)
        for step in range(length):
            n = step + 1
            hidden = self.transformer_decoder(
                self.PPE(inputs), memory, tgt_mask=self_mask[:, :n, :n], memory_mask=memory_mask[:n]
            )
            poses = self.pose_map_r(hidden)
            inputs = torch.cat([inputs, self.pose_map(poses[:, -1:]) + style], dim=1)
        return poses

    def forward(self, input_values: torch.Tensor, seq_len: int, style_id: int) -> torch.Tensor:
        """One chunk: input_values (1, n) normalised 16 kHz → raw poses (1, seq_len, out_dim)."""
        memory = self.in_fn(self.audio_encoder(input_values, seq_len))
        return self.decode(memory, style_id)

    @torch.no_grad()
    def infer(self, waveform_16k: np.ndarray, style_id: int) -> np.ndarray:
        """Mono 16 kHz waveform (n,) → raw poses (T, 6) float32, T = ceil(n / 16000 * 30), 5 s chunks.

        The whole clip is normalised once; each chunk is encoded and decoded from a zero pose.
        """
        audio, samples = self.waveform_input(waveform_16k)
        chunks = [
            self(audio[:, start:end], frames, style_id)[0] for start, end, frames in chunk_bounds(samples)
        ]
        return torch.cat(chunks).float().cpu().numpy()


def halve_rotation(raw: np.ndarray) -> np.ndarray:
    """(T, 6) → (T, 6) float32 with rotations × 0.5 (audio2vid)."""
    out = np.array(raw, dtype=np.float32, copy=True)
    out[:, :3] *= ROTATION_SCALE
    return out


def smooth_poses(poses: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Centred moving average (T, D) → (T, D); the window shrinks at the ends. Float32 means like upstream."""
    half = window // 2
    n = poses.shape[0]
    return np.stack([poses[max(0, i - half) : min(n, i + half + 1)].mean(axis=0) for i in range(n)])


def postprocess_pose(raw: np.ndarray) -> np.ndarray:
    """Raw Audio2Pose output (T, 6) → the driving poses (T, 6): rotation × 0.5, then window-7 smoothing."""
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] != POSE_DIM:
        raise ValueError(f"expected poses of shape (T, 6), got {raw.shape}")
    return smooth_poses(halve_rotation(raw))
