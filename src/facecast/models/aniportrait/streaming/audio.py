"""Streaming Audio2Mesh and Audio2Pose: per-frame outputs at 30 fps as audio arrives (issue 5,
docs/aniportrait.md §2).

The published models see the whole clip (global normalisation, bidirectional attention). Live, frame k
comes from a sliding window aligned to frame boundaries, window(k) = samples [frame_start(k - L),
frame_start(k + 1 + A)) (L left context, A look-ahead), run through the same network with seq_len =
L + 1 + A (fewer at the start); output k is kept. Frame k is out once audio up to frame_start(k + 1 + A)
has arrived, whatever the chunk sizes: the output does not depend on how audio is split.

Normalisation never reads past the window. "running": exponentially weighted mean/variance (`norm_tau_s`)
over speech frames (RMS ≥ `gate_rms`) and the pauses between them (`hangover_s`), so a long idle silence
neither dilutes the statistics nor gets blown up; "window": each window's own. Both floor the standard
deviation at `min_std`. (With wav2vec2-base's GroupNorm feature encoder the input scale cancels anyway.)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facecast.frames import MotionFrame, frame_start_sample
from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import (
    CHUNK_FRAMES,
    SMOOTH_WINDOW,
    Audio2Pose,
    alibi_slopes,
    halve_rotation,
    single_key_cross_attention,
)
from facecast.models.aniportrait.networks.wav2vec import FPS, NORM_EPS, min_samples

NORMALIZATIONS = ("running", "window")


@dataclass
class _RunningStats:
    """Exponentially weighted sums over the included audio frames."""

    weight: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, frame: np.ndarray, decay: float) -> None:
        x = frame.astype(np.float64)
        self.weight = self.weight * decay + x.size
        self.total = self.total * decay + float(x.sum())
        self.total_sq = self.total_sq * decay + float(np.dot(x, x))

    def mean_std(self, min_std: float) -> tuple[float, float]:
        if self.weight <= 0.0:
            return 0.0, min_std
        mean = self.total / self.weight
        var = max(self.total_sq / self.weight - mean * mean, 0.0)
        return mean, max(math.sqrt(var + NORM_EPS), min_std)


Feature = tuple[int, np.ndarray, float]  # (frame index, per-frame network output (D,) float32, speech 0..1)


class SlidingWindowAudio:
    """The windowing shared by the streaming audio models: audio (any chunk size) → per-frame features in order.

    `network(x (B, n) normalised 16 kHz, seq_len) → (B, seq_len, D)` (a method of `module`, an audio model whose
    device and dtype the inputs take); frame k's feature is output k - a of
    the window [frame_start(a), frame_start(k + 1 + A)), a = max(0, k - L). Frame k is emitted once samples
    [0, frame_start(k + 1 + lookahead_frames)) have arrived. With block_frames B > 1, frames come in blocks
    [anchor + mB, anchor + (m+1)B) from one window each (B times cheaper; the block's last frame sees A frames
    ahead, earlier ones more): a downstream renderer that waits for B-frame windows anyway loses nothing.
    Not thread-safe (one per session); the network may be shared by many (inference only).
    """

    def __init__(
        self,
        module: Audio2Mesh | Audio2Pose,
        network: Callable[[torch.Tensor, int], torch.Tensor],
        *,
        fps: int = FPS,
        lookahead_s: float = 0.2,
        left_context_s: float = 2.0,
        normalization: str = "running",
        norm_tau_s: float = 10.0,
        gate_rms: float = 0.003,
        hangover_s: float = 1.0,
        min_std: float = 0.01,
        max_batch: int = 32,
        rewind_frames: int = 64,
        block_frames: int = 1,
    ) -> None:
        if fps != FPS:
            raise ValueError(f"Audio2Mesh runs at {FPS} fps, not {fps}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if lookahead_s < 0 or left_context_s < 0 or block_frames < 1:
            raise ValueError("lookahead_s and left_context_s must be >= 0, block_frames >= 1")
        self.module, self.network = module, network
        self.fps = fps
        self.lookahead_frames = int(round(lookahead_s * fps))
        self.left_frames = int(round(left_context_s * fps))
        self.normalization = normalization
        self.gate_rms = gate_rms
        self.hangover_frames = int(round(hangover_s * fps))
        self.min_std = min_std
        self.max_batch = max_batch
        self.rewind_frames = rewind_frames  # how far back `interrupt` can recompute (audio kept for it)
        self.block_frames = block_frames
        self._decay = math.exp(-1.0 / (norm_tau_s * fps)) if norm_tau_s > 0 else 1.0
        if frame_start_sample(1 + self.lookahead_frames, fps) < min_samples(module.audio_encoder.config):
            raise ValueError("the window is shorter than wav2vec2's receptive field")
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push starts frame 0."""
        self._audio = np.zeros(0, np.float32)  # raw samples from absolute index self._base
        self._base = 0
        self._received = 0
        self._next = 0  # next frame to emit
        self._anchor = 0  # blocks start at anchor + m * block_frames
        self._stats = _RunningStats()
        self._stats_frames = 0  # audio frames folded into the running statistics
        self._last_active = -(1 << 30)
        self._frame_std = self.min_std

    @property
    def next_index(self) -> int:
        return self._next

    # -- audio in ------------------------------------------------------------------------------
    def push_features(self, audio: np.ndarray) -> list[Feature]:
        chunk = np.asarray(audio, dtype=np.float32).reshape(-1)
        if chunk.size:
            self._audio = np.concatenate([self._audio, chunk])
            self._received += chunk.size
        ready = self._next
        while frame_start_sample(ready + 1 + self.lookahead_frames, self.fps) <= self._received:
            ready += 1
        return self._emit(self._blocks(self._next, ready, whole=True))

    def flush_features(self) -> list[Feature]:
        """Every frame that covers received audio, the look-ahead padded with silence."""
        total = math.ceil(self._received * self.fps / 16000)
        return self._emit(self._blocks(self._next, total, whole=False))

    def interrupt_features(self, rewind_to: int | None = None) -> list[Feature]:
        """Audio from frame `rewind_to` (default: the next frame) on becomes silence.

        Frames [rewind_to, next) already emitted (made but not yet shown downstream) are computed again
        from the silenced audio and returned; rewind_to may reach back `rewind_frames` frames at most.
        Blocks restart at rewind_to (where a downstream renderer restarts its windows).
        """
        old_next = self._next
        start = old_next if rewind_to is None else rewind_to
        if not old_next - self.rewind_frames <= start <= old_next:
            raise ValueError(f"can rewind to frames {old_next - self.rewind_frames}..{old_next}, not {start}")
        cut = max(0, frame_start_sample(start, self.fps) - self._base)
        self._audio[cut:] = 0.0
        self._next = self._anchor = start
        return self._emit(self._blocks(start, old_next, whole=False))

    # -- internals -----------------------------------------------------------------------------
    def _blocks(self, start: int, end: int, *, whole: bool) -> list[tuple[int, int]]:
        """[k0, k1) blocks covering [start, end), cut at anchor + m * B; `whole`: drop an unfinished last one."""
        out, k0, b = [], start, self.block_frames
        while k0 < end:
            k1 = self._anchor + ((k0 - self._anchor) // b + 1) * b
            if k1 > end and whole:
                break
            out.append((k0, min(k1, end)))
            k0 = min(k1, end)
        return out

    def _samples(self, start: int, end: int) -> np.ndarray:
        """Raw samples [start, end) in absolute indices, zeros past what has arrived."""
        out = np.zeros(end - start, np.float32)
        lo, hi = start - self._base, min(end, self._received) - self._base
        if hi > lo:
            out[: hi - lo] = self._audio[lo:hi]
        return out

    def _advance_stats(self, upto_frame: int) -> None:
        """Fold audio frames [_stats_frames, upto_frame] (those that have fully arrived) into the stats."""
        while self._stats_frames <= upto_frame:
            j = self._stats_frames
            start, end = frame_start_sample(j, self.fps), frame_start_sample(j + 1, self.fps)
            if end > self._received:
                break
            frame = self._samples(start, end)
            rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
            if rms >= self.gate_rms:
                self._last_active = j
            if j - self._last_active <= self.hangover_frames:
                self._stats.add(frame, self._decay)
            self._stats_frames += 1

    def _speech(self, k: int) -> float:
        frame = self._samples(frame_start_sample(k, self.fps), frame_start_sample(k + 1, self.fps))
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        if rms < self.gate_rms:
            return 0.0
        return float(min(1.0, rms / self._frame_std))

    def _window(self, k0: int, k1: int) -> tuple[np.ndarray, int, int]:
        """(normalised window samples, seq_len, output position of frame k0) for frames [k0, k1)."""
        a = max(0, k0 - self.left_frames)
        b = k1 + self.lookahead_frames
        raw = self._samples(frame_start_sample(a, self.fps), frame_start_sample(b, self.fps))
        if self.normalization == "running":
            self._advance_stats(b - 1)
            mean, std = self._stats.mean_std(self.min_std)
        else:
            mean, std = float(raw.mean()), max(float(np.sqrt(raw.var() + NORM_EPS)), self.min_std)
        self._frame_std = std
        return ((raw - mean) / std).astype(np.float32), b - a, k0 - a

    def _emit(self, blocks: list[tuple[int, int]]) -> list[Feature]:
        frames: list[Feature] = []
        groups: dict[tuple[int, int, int, int], list[tuple[int, np.ndarray, list[float]]]] = {}
        for k0, k1 in blocks:
            values, seq_len, pos = self._window(k0, k1)
            key = (values.size, seq_len, pos, k1 - k0)
            groups.setdefault(key, []).append((k0, values, [self._speech(k) for k in range(k0, k1)]))
            if len(groups[key]) >= self.max_batch:
                frames += self._run(key, groups.pop(key))
        for key, items in groups.items():
            frames += self._run(key, items)
        frames.sort(key=lambda f: f[0])
        if frames:
            self._next = frames[-1][0] + 1
            self._trim()
        return frames

    @torch.no_grad()
    def _run(
        self, key: tuple[int, int, int, int], items: list[tuple[int, np.ndarray, list[float]]]
    ) -> list[Feature]:
        """One batched forward over equal-length windows; keeps outputs [pos, pos + n) of each."""
        _, seq_len, pos, n = key
        param = next(self.module.parameters())
        x = torch.from_numpy(np.stack([values for _, values, _ in items])).to(param.device, param.dtype)
        out = self.network(x, seq_len)[:, pos : pos + n].float().cpu().numpy()
        return [(k0 + j, out[i, j], speech[j]) for i, (k0, _, speech) in enumerate(items) for j in range(n)]

    def _trim(self) -> None:
        """Drop samples no future window (or statistics update) can read."""
        keep_from = frame_start_sample(max(0, self._next - self.rewind_frames - self.left_frames), self.fps)
        if self.normalization == "running":
            keep_from = min(keep_from, frame_start_sample(self._stats_frames, self.fps))
        drop = keep_from - self._base
        if drop > 16000:  # in blocks, not every frame
            self._audio = self._audio[drop:]
            self._base = keep_from


class StreamingAudio2Mesh(SlidingWindowAudio):
    """push(audio float32 16 kHz mono, any chunk size) → MotionFrames with mesh offsets, in order from 0.

    MotionFrame.mesh_offsets: (468, 3) float32 Audio2Mesh offsets; MotionFrame.speech: 0..1 activity.
    Settings as SlidingWindowAudio (look-ahead, left context, normalisation).
    """

    def __init__(self, model: Audio2Mesh, **settings: Any) -> None:
        self.model = model
        super().__init__(model, model, **settings)  # via __call__: hooks apply

    def push(self, audio: np.ndarray) -> list[MotionFrame]:
        return self._frames(self.push_features(audio))

    def flush(self) -> list[MotionFrame]:
        """Every frame that covers received audio, the look-ahead padded with silence."""
        return self._frames(self.flush_features())

    def interrupt(self, rewind_to: int | None = None) -> list[MotionFrame]:
        """Silence from frame `rewind_to` on; frames [rewind_to, next) recomputed (see interrupt_features)."""
        return self._frames(self.interrupt_features(rewind_to))

    @staticmethod
    def _frames(features: list[Feature]) -> list[MotionFrame]:
        return [
            MotionFrame(index=k, mesh_offsets=v.reshape(-1, 3), speech=speech) for k, v, speech in features
        ]


class StreamingAudio2Pose(SlidingWindowAudio):
    """push(audio) → [(frame index, pose (6,) float32)]: Audio2Pose run incrementally, one decoder step per frame.

    The memory of frame k (Audio2Pose's own wav2vec2 + in_fn) comes from the same sliding windows as
    Audio2Mesh; the 8-layer decoder keeps every layer's keys/values (the cached decode of
    Audio2Pose.decode, one step at a time) and restarts from a zero pose every `chunk_frames` frames
    as upstream restarts each 5 s chunk (its position encoding is finite). Output: rotation × 0.5 and a
    causal moving average over the last `smooth_window` frames (upstream's centred window needs the future).
    """

    def __init__(
        self,
        model: Audio2Pose,
        *,
        style_id: int = 0,
        smooth_window: int = SMOOTH_WINDOW,
        chunk_frames: int = CHUNK_FRAMES,
        **settings: Any,
    ) -> None:
        if not 0 <= style_id < model.id_embed.num_embeddings:
            raise ValueError(f"style_id must be in [0, {model.id_embed.num_embeddings}), got {style_id}")
        if not 1 <= chunk_frames <= model.PPE.pe.shape[1]:
            raise ValueError(f"chunk_frames must be in [1, {model.PPE.pe.shape[1]}], got {chunk_frames}")
        self.model, self.style_id, self.chunk_frames = model, style_id, chunk_frames
        self._layers = [cast(nn.TransformerDecoderLayer, layer) for layer in model.transformer_decoder.layers]
        self._recent: deque[np.ndarray] = deque(maxlen=smooth_window)
        super().__init__(model, self._memory, **settings)

    def _memory(self, x: torch.Tensor, seq_len: int) -> torch.Tensor:
        """(B, n) → decoder memory (B, seq_len, latent)."""
        return cast(torch.Tensor, self.model.in_fn(self.model.audio_encoder(x, seq_len)))

    def reset(self) -> None:
        super().reset()
        self._recent.clear()
        self._restart()

    @torch.no_grad()
    def _restart(self) -> None:
        """Decoder state of a new chunk: empty key/value caches, a zero previous pose."""
        m = self.model
        param = next(m.parameters())
        dim = m.pose_map.out_features
        heads = m.num_heads
        shape = (1, heads, self.chunk_frames, dim // heads)
        self._keys = [torch.zeros(shape, device=param.device, dtype=param.dtype) for _ in self._layers]
        self._values = [torch.zeros(shape, device=param.device, dtype=param.dtype) for _ in self._layers]
        self._slopes = alibi_slopes(heads).to(param)
        self._style = m.id_embed(torch.tensor([self.style_id], device=param.device))[
            :, None
        ]  # (1, 1, latent)
        self._input = m.pose_map(param.new_zeros(1, 1, m.pose_map.in_features)) + self._style
        self._pos = 0

    @torch.no_grad()
    def step(self, memory: np.ndarray) -> np.ndarray:
        """One decoder step: memory of the next frame (latent,) → raw pose (6,) (before × 0.5 and smoothing)."""
        if self._pos == self.chunk_frames:
            self._restart()
        m, step = self.model, self._pos
        mem = torch.from_numpy(np.asarray(memory)).to(self._input)[None, None]  # (1, 1, latent)
        dim, heads = mem.shape[-1], m.num_heads
        hidden = self._input + m.PPE.pe[:, step : step + 1]
        distance = torch.arange(step, -1, -1, device=mem.device, dtype=mem.dtype)  # i - j, j = 0..i
        bias = (-self._slopes[:, None] * distance)[None, :, None, :]  # (1, heads, 1, step + 1)
        for i, layer in enumerate(self._layers):
            attn = layer.self_attn
            proj = F.linear(hidden, attn.in_proj_weight, attn.in_proj_bias).view(1, 3, heads, dim // heads)
            q, k, v = proj.unbind(1)
            self._keys[i][:, :, step] = k
            self._values[i][:, :, step] = v
            keys, values = self._keys[i][:, :, : step + 1], self._values[i][:, :, : step + 1]
            out = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=bias)
            hidden = layer.norm1(hidden + attn.out_proj(out.reshape(1, 1, dim)))
            hidden = layer.norm2(hidden + single_key_cross_attention(layer.multihead_attn, mem))
            hidden = layer.norm3(hidden + layer.linear2(F.relu(layer.linear1(hidden))))
        pose = m.pose_map_r(hidden)  # (1, 1, 6)
        self._input = m.pose_map(pose) + self._style
        self._pos += 1
        return np.asarray(pose[0, 0].float().cpu().numpy())

    def push(self, audio: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return self._poses(self.push_features(audio))

    def flush(self) -> list[tuple[int, np.ndarray]]:
        return self._poses(self.flush_features())

    def interrupt(self, rewind_to: int | None = None) -> None:
        """Audio from `rewind_to` on becomes silence; poses already made stay (the head does not jump)."""
        self.interrupt_features(rewind_to)

    def _poses(self, features: list[Feature]) -> list[tuple[int, np.ndarray]]:
        out = []
        for k, memory, _ in features:
            self._recent.append(halve_rotation(self.step(memory)[None])[0])
            out.append((k, np.mean(np.stack(self._recent), axis=0).astype(np.float32)))
        return out
