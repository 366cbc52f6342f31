"""Synthetic mouth interior, painted where the warped lips part: dark cavity, teeth, a hint of tongue."""

from __future__ import annotations

import cv2
import numpy as np

CAVITY_EDGE = np.array([88, 30, 34], np.float32)
CAVITY_DEEP = np.array([34, 10, 12], np.float32)
UPPER_TEETH = np.array([236, 226, 206], np.float32)
LOWER_TEETH = np.array([178, 168, 158], np.float32)
TONGUE = np.array([150, 62, 66], np.float32)
MIN_GAP_PX = 1.0  # below this extra opening the portrait's own lips are left alone


def paint_mouth(
    frame: np.ndarray, upper: np.ndarray, lower: np.ndarray, extra_gap_px: float, feather_px: float = 1.2
) -> None:
    """Paint the interior in place.

    frame: (H, W, 3) uint8 RGB. upper / lower: (N, 2) inner-lip points (pixels) from one mouth corner to
    the other along the upper and the lower lip, both in the same direction (point i faces point i). extra_gap_px: how much wider the lips are apart than in
    the portrait; the interior fades in over the first few pixels so a closing mouth never flickers.
    """
    strength = float(np.clip((extra_gap_px - MIN_GAP_PX) / 3.0, 0.0, 1.0))
    if strength <= 0.0:
        return
    poly = np.concatenate([upper, lower[::-1]])
    h, w = frame.shape[:2]
    pad = 4
    x0, y0 = np.floor(poly.min(0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(0)).astype(int) + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    rh, rw = y1 - y0, x1 - x0
    scale = 4  # draw at 4x with sub-pixel coordinates, then area-average: smooth edges
    shift = np.array([x0, y0], np.float32)

    def pts(p: np.ndarray) -> np.ndarray:
        return np.round((p - shift) * scale * 16).astype(np.int32).reshape(-1, 1, 2)

    def fill(p: np.ndarray) -> np.ndarray:
        m = np.zeros((rh * scale, rw * scale), np.uint8)
        cv2.fillPoly(m, [pts(p)], (255,), lineType=cv2.LINE_8, shift=4)
        return cv2.resize(m, (rw, rh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    cavity = fill(poly)
    gap = float(np.linalg.norm(lower - upper, axis=1).max())
    width = float(np.linalg.norm(upper[-1] - upper[0]))
    # Teeth: bands hanging from the upper lip / rising from the lower lip, clipped to the cavity.
    yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
    c = poly.mean(0) - shift
    # Teeth: bands hanging from the upper lip / rising from the lower lip, clipped to the cavity and
    # fading out towards the corners, where they recede into the cheeks' shadow.
    t_up = min(0.3 * gap, 0.09 * width) if gap > 9.0 else 0.0  # a narrow slit shows no teeth
    lateral = np.abs(xx - c[0]) / (0.5 * width + 1)
    teeth_up = fill(np.concatenate([upper, upper[::-1] + [0, t_up]])) * cavity
    teeth_up *= np.clip(1.0 - (lateral / 0.85) ** 3, 0.0, 1.0)
    t_lo = min(0.15 * gap, 0.05 * width) if gap > 0.2 * width else 0.0
    teeth_lo = fill(np.concatenate([lower, lower[::-1] - [0, t_lo]])) * cavity if t_lo > 0.5 else 0 * cavity
    teeth_lo = teeth_lo * np.clip(1.0 - (lateral / 0.6) ** 3, 0.0, 1.0)
    # Cavity shading: darker towards the middle of the opening.
    r = np.sqrt(((xx - c[0]) / (0.5 * width + 1)) ** 2 + ((yy - c[1]) / (0.5 * gap + 2)) ** 2) ** 2
    depth = np.clip(1.0 - r, 0.0, 1.0)[..., None]
    color = CAVITY_EDGE * (1 - depth) + CAVITY_DEEP * depth
    tongue_y = c[1] + 0.35 * gap
    tongue = np.clip(
        1.0 - np.sqrt(((xx - c[0]) / (0.3 * width + 1)) ** 2 + ((yy - tongue_y) / (0.3 * gap + 1)) ** 2), 0, 1
    )
    tongue = (np.clip(tongue * 3, 0, 1) * min(1.0, gap / 18.0))[..., None] * 0.6
    color = color * (1 - tongue) + TONGUE * tongue
    # Teeth are darker towards the corners, in the cheeks' shadow.
    corner_shade = 1.0 - 0.5 * np.clip(lateral, 0, 1) ** 2
    tu = cv2.GaussianBlur(teeth_up, (0, 0), 0.7)[..., None] * 0.9
    color = color * (1 - tu) + (UPPER_TEETH * corner_shade[..., None]) * tu
    tl = np.asarray(teeth_lo)[..., None]
    color = color * (1 - tl) + (LOWER_TEETH * corner_shade[..., None]) * tl
    alpha = cv2.GaussianBlur(cavity, (0, 0), feather_px)[..., None] * strength
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + color * alpha, 0, 255).astype(np.uint8)
