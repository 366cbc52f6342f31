"""Synthetic talking-face clips with a known lip-sync: the mouth opens exactly as much as the audio is loud.

A real portrait gets its lower lip and jaw pulled down by a smooth displacement (cv2.remap) and
the gap painted as a dark mouth cavity, so mediapipe face mesh sees parted lips. The audio is
syllable-like bursts of voiced noise; frame k's mouth follows the mean envelope of a chosen span.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import cv2
import numpy as np

SAMPLE_RATE = 16000
FPS = 25
SIZE = 256
# Inner-lip contours of mediapipe's mesh, left corner to right corner.
UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]


def syllable_envelope(duration_s: float, seed: int) -> np.ndarray:
    """(duration_s * SAMPLE_RATE,) envelope in [0, 1]: Hann bursts of 0.10-0.25 s with pauses."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SAMPLE_RATE)
    env = np.zeros(n)
    t = 0.15
    while t < duration_s - 0.3:
        length = rng.uniform(0.10, 0.25)
        a, b = int(t * SAMPLE_RATE), int((t + length) * SAMPLE_RATE)
        env[a:b] = np.maximum(env[a:b], rng.uniform(0.35, 1.0) * np.hanning(b - a))
        t += length + rng.uniform(0.03, 0.25)
    return env


def voiced_audio(env: np.ndarray, seed: int) -> np.ndarray:
    """Envelope times a buzzy 140 Hz source plus breath noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed + 1)
    t = np.arange(env.shape[0]) / SAMPLE_RATE
    source = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 8)) * 0.35
    source = source + 0.15 * rng.standard_normal(env.shape[0])
    return (0.6 * env * source).astype(np.float32)


def frame_envelope(env: np.ndarray, frames: int) -> np.ndarray:
    """Mean envelope over each frame's span [k/FPS, (k+1)/FPS); zero past the end."""
    out = np.zeros(frames)
    for k in range(frames):
        a, b = k * SAMPLE_RATE // FPS, (k + 1) * SAMPLE_RATE // FPS
        if a < env.shape[0]:
            out[k] = env[a:b].mean()
    return out


class MouthOpener:
    """Opens the mouth of one portrait by an amount in [0, 1] (1 = about half the mouth width)."""

    def __init__(self, portrait_bgr: np.ndarray, landmarks_px: np.ndarray) -> None:
        self.image = portrait_bgr
        h, w = portrait_bgr.shape[:2]
        upper, lower = landmarks_px[UPPER_INNER], landmarks_px[LOWER_INNER]
        self.upper = upper
        self.lower = lower
        left, right = landmarks_px[78], landmarks_px[308]
        self.cx = (left[0] + right[0]) / 2
        self.half_width = abs(right[0] - left[0]) / 2
        chin_y = landmarks_px[152][1]
        xs = np.arange(w, dtype=np.float32)
        # Per column: the lip line, and a bump that is 1 mid-mouth and 0 at the corners (no tear outside).
        order = np.argsort(upper[:, 0])
        self.line_y = np.interp(xs, upper[order, 0], (upper[order, 1] + lower[order, 1]) / 2)
        u = np.clip((xs - self.cx) / self.half_width, -1, 1)
        self.bump_x = np.cos(u * np.pi / 2) ** 2
        ys = np.arange(h, dtype=np.float32)[:, None]
        # Full drop from the lip line down to the chin, fading out over the neck.
        fade = np.clip(1 - (ys - chin_y) / (0.8 * (chin_y - self.line_y.min())), 0, 1)
        self.weight_y = np.where(ys < self.line_y[None, :], 0.0, np.where(ys < chin_y, 1.0, fade))
        self.grid_x, self.grid_y = np.meshgrid(xs, ys[:, 0])

    def render(self, amount: float) -> np.ndarray:
        drop = amount * self.half_width  # pixels at mid-mouth
        dy = (drop * self.bump_x[None, :] * self.weight_y).astype(np.float32)
        out = cv2.remap(
            self.image,
            self.grid_x.astype(np.float32),
            (self.grid_y - dy).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if drop > 0.3:
            u = np.clip((self.lower[:, 0] - self.cx) / self.half_width, -1, 1)
            moved = self.lower + np.stack([np.zeros_like(u), drop * np.cos(u * np.pi / 2) ** 2], axis=1)
            cavity = np.concatenate([self.upper, moved[::-1]]).round().astype(np.int32)
            cv2.fillPoly(out, [cavity], (25, 18, 40), lineType=cv2.LINE_AA)
        return out


def write_clip(
    path: Path,
    frames_bgr: list[np.ndarray],
    audio: np.ndarray | None,
    audio_offset_s: float = 0.0,
) -> Path:
    """H.264 + AAC MP4; the audio stream's first sample at pts audio_offset_s."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "18"})
        video.height, video.width = frames_bgr[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        for k, bgr in enumerate(frames_bgr):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            frame.pts = k
            frame.time_base = fractions.Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None and audio is not None:
            start = round(audio_offset_s * SAMPLE_RATE)
            for i in range(0, audio.shape[0], 1024):
                chunk = av.AudioFrame.from_ndarray(audio[None, i : i + 1024], format="flt", layout="mono")
                chunk.sample_rate = SAMPLE_RATE
                chunk.pts = start + i
                chunk.time_base = fractions.Fraction(1, SAMPLE_RATE)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path
