"""Adds head pose and blinks to the driver's mouth motion; idle sway when silent.

Head pose comes from an AniPortrait pose template or is procedural: a slow sway made of incommensurate
sines (never visibly repeating) plus small nods that follow rises in speech energy. Blinks come at
natural random intervals (seeded, so renders are reproducible).
"""

from __future__ import annotations

import math

import numpy as np

from facecast.frames import MotionFrame
from facecast.models.face.rig import FaceRig
from facecast.models.motion.pose_template import TEMPLATE_FPS, ping_pong_index

BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.07, 0.04, 0.11
BLINK_MEAN_INTERVAL_S = 3.6
BLINK_MIN_INTERVAL_S = 1.2
# Sway: (amplitude deg, frequency Hz) per rotation axis [pitch x, yaw y, roll z].
SWAY = ([(1.0, 0.061), (0.5, 0.173)], [(2.2, 0.047), (0.8, 0.131)], [(0.9, 0.083), (0.3, 0.211)])
NOD_DEG = 3.0


class MotionComposer:
    """compose(frame) → frame with pose and blink set and blink offsets added to the mesh."""

    def __init__(
        self,
        rig: FaceRig,
        fps: int = 30,
        *,
        seed: int = 0,
        pose_template: np.ndarray | None = None,
        head_motion: bool = True,
    ) -> None:
        self.rig = rig
        self.fps = fps
        self.template = pose_template
        self.head_motion = head_motion
        rng = np.random.default_rng(seed)
        self._phases = rng.uniform(0, 2 * math.pi, size=(3, 2))
        self._blink_rng = np.random.default_rng(rng.integers(1 << 31))
        self._next_blink_s = self._draw_interval()
        self._blink_start_s = -1.0
        self._energy_fast = 0.0
        self._energy_slow = 0.0

    def _draw_interval(self) -> float:
        return BLINK_MIN_INTERVAL_S + float(self._blink_rng.gamma(2.0, (BLINK_MEAN_INTERVAL_S - 1.2) / 2.0))

    def _blink(self, t: float) -> float:
        if t >= self._next_blink_s and self._blink_start_s < self._next_blink_s:
            self._blink_start_s = t
            self._next_blink_s = t + self._draw_interval()
        dt = t - self._blink_start_s
        if self._blink_start_s < 0 or dt > BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S:
            return 0.0
        if dt < BLINK_CLOSE_S:
            return dt / BLINK_CLOSE_S
        if dt < BLINK_CLOSE_S + BLINK_HOLD_S:
            return 1.0
        return max(0.0, 1.0 - (dt - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S)

    def _pose(self, t: float, speech: float) -> np.ndarray:
        pose = np.zeros(6, np.float32)
        if not self.head_motion:
            return pose
        if self.template is not None:
            return self.template[ping_pong_index(int(t * TEMPLATE_FPS), len(self.template))].copy()
        for axis, terms in enumerate(SWAY):
            pose[axis] = sum(
                a * math.sin(2 * math.pi * f * t + self._phases[axis, i]) for i, (a, f) in enumerate(terms)
            )
        # Nods: the head dips a little when speech energy rises above its recent average.
        self._energy_fast += 0.35 * (speech - self._energy_fast)
        self._energy_slow += 0.05 * (speech - self._energy_slow)
        pose[0] += NOD_DEG * max(0.0, self._energy_fast - self._energy_slow)
        return pose

    def compose(self, frame: MotionFrame) -> MotionFrame:
        t = frame.index / self.fps
        blink = self._blink(t)
        frame.pose = self._pose(t, frame.speech)
        frame.blink = blink
        if blink > 0.0:
            frame.mesh_offsets = frame.mesh_offsets + (blink * self.rig.blink).astype(np.float32)
        return frame
