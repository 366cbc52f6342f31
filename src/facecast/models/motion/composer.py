"""Adds head pose and blinks to the driver's mouth motion; idle sway when silent.

Head pose comes from an AniPortrait pose template or is procedural: a slow sway made of incommensurate
sines (never visibly repeating) plus small nods that follow rises in speech energy. Blinks as people
blink (seeded, so renders are reproducible): closing in 100 ms, reopening in 170 ms, at random intervals
(about 16 a minute), sometimes doubled, and more likely where a phrase ends. The lids also lower a
little when the head dips and when the face has been silent a while (a relaxed look).
"""

from __future__ import annotations

import math

import numpy as np

from facecast.frames import MotionFrame
from facecast.models.face.rig import FaceRig
from facecast.models.motion.pose_template import TEMPLATE_FPS, ping_pong_index

BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.10, 0.03, 0.17
BLINK_MEAN_INTERVAL_S = 3.8
BLINK_MIN_INTERVAL_S = 1.2
DOUBLE_BLINK_P = 0.12  # a second blink right after the first
PHRASE_END_BLINK_P = 0.6  # a blink 0.1-0.3 s after speech stops, unless one was just made
SPEAKING, SILENT = 0.3, 0.08  # speech activity above / below which a frame counts as speech / silence
DROOP_PER_DEG = 0.03  # lids lower by 3 % of the eye per degree the head dips
RELAXED_LIDS, RELAX_AFTER_S = 0.12, 2.0  # and by 12 % after 2 s of silence
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
        self._last_speech_s = -1e9
        self._was_speaking = False
        self._relaxed = 0.0
        self._energy_fast = 0.0
        self._energy_slow = 0.0

    def _draw_interval(self) -> float:
        return BLINK_MIN_INTERVAL_S + float(self._blink_rng.gamma(2.0, (BLINK_MEAN_INTERVAL_S - 1.2) / 2.0))

    def _schedule(self, t: float, speech: float) -> None:
        """Moves the next blink earlier where people blink: a phrase's end."""
        speaking = speech > SPEAKING
        if speaking:
            self._last_speech_s = t
        ended = self._was_speaking and speech < SILENT
        if ended:
            self._was_speaking = False
            since_blink = t - self._blink_start_s
            if since_blink > BLINK_MIN_INTERVAL_S and self._blink_rng.random() < PHRASE_END_BLINK_P:
                self._next_blink_s = min(self._next_blink_s, t + float(self._blink_rng.uniform(0.1, 0.3)))
        elif speaking:
            self._was_speaking = True

    def _blink(self, t: float) -> float:
        if t >= self._next_blink_s and self._blink_start_s < self._next_blink_s:
            self._blink_start_s = t
            length = BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S
            double = self._blink_rng.random() < DOUBLE_BLINK_P
            self._next_blink_s = t + (length + 0.1 if double else self._draw_interval())
        dt = t - self._blink_start_s
        if self._blink_start_s < 0 or dt > BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S:
            return 0.0
        if dt < BLINK_CLOSE_S:
            x = dt / BLINK_CLOSE_S
            return x * x * (3 - 2 * x)
        if dt <= BLINK_CLOSE_S + BLINK_HOLD_S + 1e-9:
            return 1.0
        x = (dt - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S
        return max(0.0, 1.0 - x * (2 - x))  # eases out: quick at first, settling open

    def _droop(self, t: float, pitch_deg: float) -> float:
        """Partly lowered lids: a dipped head, or a relaxed face after a while of silence."""
        target = RELAXED_LIDS if t - self._last_speech_s > RELAX_AFTER_S else 0.0
        self._relaxed += (target - self._relaxed) / self.fps  # eases over about a second
        return min(0.4, self._relaxed + DROOP_PER_DEG * max(0.0, pitch_deg))

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
        self._schedule(t, frame.speech)
        frame.pose = self._pose(t, frame.speech)
        blink = max(self._blink(t), self._droop(t, float(frame.pose[0])))
        frame.blink = blink
        if blink > 0.0:
            frame.mesh_offsets = frame.mesh_offsets + (blink * self.rig.blink).astype(np.float32)
        return frame
