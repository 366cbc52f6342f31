"""Typed records that travel through a session: motion frames and video frames.

Shared by every layer (models produce them, stream/ schedules them), so they live at the package
root and depend on numpy only. One clock: the audio sample index at AUDIO_RATE_HZ; video frame k
covers samples [frame_start_sample(k), frame_start_sample(k + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AUDIO_RATE_HZ = 16000
MESH_VERTICES = 468


def frame_start_sample(k: int, fps: int) -> int:
    """First audio sample (16 kHz) covered by video frame k at `fps` (exact integer arithmetic)."""
    return (k * AUDIO_RATE_HZ) // fps


def frame_samples(k: int, fps: int) -> tuple[int, int]:
    """Half-open sample range [start, end) that video frame k covers."""
    return frame_start_sample(k, fps), frame_start_sample(k + 1, fps)


@dataclass(slots=True)
class MotionFrame:
    """Face motion for video frame `index`.

    mesh_offsets: (468, 3) float32, centimetres in MediaPipe's canonical face space, added to the
        avatar's reference metric mesh (same meaning as Audio2Mesh's output).
    pose: (6,) float32 [rx, ry, rz (degrees, euler "xyz"), tx, ty, tz (cm)] relative to the
        reference head pose (AniPortrait's pose format).
    blink: 0 = eyes open, 1 = closed.
    speech: 0..1 speech activity of this frame (0 = silence), used for idle/nod decisions.
    """

    index: int
    mesh_offsets: np.ndarray
    pose: np.ndarray = field(default_factory=lambda: np.zeros(6, np.float32))
    blink: float = 0.0
    speech: float = 0.0


@dataclass(slots=True)
class VideoFrame:
    """A rendered frame: image (H, W, 3) uint8 RGB for video frame `index`."""

    index: int
    image: np.ndarray
    motion: MotionFrame | None = None
