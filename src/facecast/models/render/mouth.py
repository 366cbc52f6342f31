"""The mouth interior, painted each frame where the warped lips part: cavity, tongue, two rows of teeth.

Everything is tinted from the face (the lips and the whites of the eyes), so it sits in the photo's
light. The upper teeth are fixed to the skull (they move with the head pose only); the lower teeth move
with the jaw. A photo that shows its teeth lends them as the upper row (lips.PortraitMouth.teeth).
The interior darkens as the opening narrows: little light gets into a nearly closed mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facecast.models.render.lips import MEET_AT, PortraitMouth
from facecast.models.render.teeth import draw_row

ENAMEL = np.array([240, 232, 214], np.float32)
MIN_GAP_PX = 0.5
# The lower teeth move with the jaw but less than the lower lip, which the opening jaw also pulls down
# and away from them: they show more the wider the mouth opens.
JAW_TEETH = 0.75  # openings narrower than this are closed lips: nothing painted
FADE_PX = 2.0  # the interior fades in over this much opening, so a closing mouth never flickers
SUPERSAMPLE = 4  # the opening is filled at 4x and area-averaged: smooth lip edges


@dataclass
class Patch:
    """An RGBA picture placed at `origin` (its top-left corner, in portrait pixels)."""

    rgba: np.ndarray
    origin: np.ndarray


class MouthPainter:
    """paint(frame, upper, lower, skull, jaw_shift): the interior between the driven inner lips."""

    def __init__(self, mouth: PortraitMouth, landmarks: np.ndarray, sclera: np.ndarray) -> None:
        width = float(np.linalg.norm(landmarks[61] - landmarks[291]))
        meet = landmarks[13] + MEET_AT * (landmarks[14] - landmarks[13])  # where the closed lips meet
        # Enamel: between the eyes' whites (lit like the face) and a typical tooth shade; gums and the
        # cavity from the lip colour.
        tone = 0.3 * sclera + 0.7 * ENAMEL * np.clip(float(sclera.mean()) / 200.0, 0.8, 1.0)
        gum = mouth.lip * np.array([0.85, 0.55, 0.58], np.float32)
        self.cavity_edge = mouth.lip * np.array([0.42, 0.3, 0.3], np.float32)
        self.cavity_deep = mouth.lip * np.array([0.16, 0.08, 0.08], np.float32)
        self.tongue = mouth.lip * np.array([0.78, 0.5, 0.52], np.float32)
        if mouth.teeth is not None:
            # The photo's own teeth, seen in the shade of the lips.
            rgba = mouth.teeth.copy()
            rgba[..., :3] = (rgba[..., :3] * 0.9).astype(np.uint8)
            self.upper = Patch(rgba, np.asarray(mouth.teeth_origin, np.float64))
        else:
            row = draw_row(0.95 * width, 0.2 * width, tone, gum, upper=True)
            edge = meet + [0.0, 0.06 * width]  # incisal edges a little below where the lips meet
            self.upper = Patch(row, edge - [row.shape[1] / 2, row.shape[0]])
        row = draw_row(0.75 * width, 0.09 * width, tone * 0.8, gum, upper=False)
        top = meet + [0.0, 0.015 * width]  # lower incisors just behind and under the upper ones
        self.lower = Patch(row, top - [row.shape[1] / 2, 0.0])

    def paint(
        self,
        frame: np.ndarray,
        upper: np.ndarray,
        lower: np.ndarray,
        skull: np.ndarray,
        jaw_shift: np.ndarray,
    ) -> None:
        """Paint in place.

        frame: (H, W, 3) uint8 RGB. upper / lower: (N, 2) driven inner-lip points (pixels), corner to
        corner along each lip in the same direction. skull: 2x3 affine portrait → frame of the head's
        rigid motion. jaw_shift: (2,) pixels the lower teeth move with the jaw.
        """
        gaps = lower[:, 1] - upper[:, 1]
        gap = float(gaps.max())
        if gap <= MIN_GAP_PX:
            return
        lower = np.column_stack([lower[:, 0], np.maximum(lower[:, 1], upper[:, 1])])  # crossed lips: shut
        # The opening's ends: halfway between the corner landmark and the first facing pair, which sit on
        # the lips (the corner landmarks of a wide smile lie outside the visible opening).
        ends = [
            0.5 * upper[0] + 0.25 * (upper[1] + lower[1]),
            0.5 * upper[-1] + 0.25 * (upper[-2] + lower[-2]),
        ]
        upper = np.concatenate([[ends[0]], upper[1:-1], [ends[1]]])
        lower = np.concatenate([[ends[0]], lower[1:-1], [ends[1]]])
        # Lips part most in the middle and pinch towards the corners: the opening is a lens (drawn on
        # 4x denser curves, so its ends taper smoothly rather than in one long corner segment).
        dense = np.linspace(0.0, len(upper) - 1.0, 4 * len(upper) - 3)
        upper, lower = (
            np.stack([np.interp(dense, np.arange(len(c)), c[:, i]) for i in (0, 1)], 1)
            for c in (upper, lower)
        )
        across = np.linspace(-1.0, 1.0, len(upper))[:, None]
        mid = 0.5 * (upper + lower)
        pinch = np.clip(1.0 - across**2, 0.0, 1.0) ** 0.9
        upper, lower = mid + (upper - mid) * pinch, mid + (lower - mid) * pinch
        poly = np.concatenate([upper, lower[::-1]])
        h, w = frame.shape[:2]
        pad = 3
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + pad, [w, h])
        if x1 - x0 < 3 or y1 - y0 < 2:
            return
        rw, rh = int(x1 - x0), int(y1 - y0)
        origin = np.array([x0, y0], np.float64)
        opening = _fill(poly - origin, rw, rh)
        width = float(np.linalg.norm(upper[-1] - upper[0]))
        light = 0.6 + 0.4 * float(np.clip(gap / (0.3 * width + 1e-6), 0.0, 1.0))  # a slit lets in less light

        # Cavity: darker towards its middle and back, lighter by the lips.
        yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
        c = poly.mean(0) - origin
        r2 = ((xx - c[0]) / (0.5 * width + 1)) ** 2 + ((yy - c[1]) / (0.5 * gap + 1)) ** 2
        depth = np.clip(1.0 - r2, 0.0, 1.0)[..., None]
        color = (self.cavity_edge * (1 - depth) + self.cavity_deep * depth) * light
        # Tongue: a low rounded mass behind the lower teeth, its top edge catching a little light.
        ty = c[1] + 0.45 * gap
        t = 1.0 - np.sqrt(((xx - c[0]) / (0.3 * width + 1)) ** 2 + ((yy - ty) / (0.45 * gap + 1)) ** 2)
        tongue = (np.clip(t * 4.0, 0.0, 1.0) * min(1.0, gap / (0.12 * width)))[..., None]
        top_light = np.clip(1.0 - (yy - (ty - 0.45 * gap)) / (0.3 * gap + 1), 0.6, 1.0)[..., None]
        color = color * (1 - tongue) + self.tongue * top_light * light * tongue
        teeth_light = 0.5 + 0.5 * light
        for patch, shift in ((self.lower, JAW_TEETH * jaw_shift), (self.upper, np.zeros(2))):  # back to front
            rgba = _place(patch, skull, shift - origin, rw, rh)
            a = rgba[..., 3:] / 255.0
            color = color * (1 - a) + rgba[..., :3] * teeth_light * a
        strength = float(np.clip((gap - MIN_GAP_PX) / FADE_PX, 0.0, 1.0))
        alpha = opening[..., None] * strength
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + color * alpha, 0, 255).astype(np.uint8)


def _fill(poly: np.ndarray, rw: int, rh: int) -> np.ndarray:
    """Coverage 0..1 of a polygon (ROI pixels), drawn at SUPERSAMPLE x with sub-pixel vertices."""
    m = np.zeros((rh * SUPERSAMPLE, rw * SUPERSAMPLE), np.uint8)
    pts = np.round(poly * SUPERSAMPLE * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(m, [pts], (255,), lineType=cv2.LINE_8, shift=4)
    return cv2.resize(m, (rw, rh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _place(patch: Patch, skull: np.ndarray, shift: np.ndarray, rw: int, rh: int) -> np.ndarray:
    """The patch moved by the skull's affine motion plus `shift`, as float RGBA over the ROI."""
    a = skull[:, :2]
    m = np.column_stack([a, a @ patch.origin + skull[:, 2] + shift])
    out = cv2.warpAffine(patch.rgba, m, (rw, rh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    return out.astype(np.float32)
