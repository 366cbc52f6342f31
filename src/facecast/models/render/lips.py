"""The portrait's own mouth, closed once at start: what lay between its lips becomes lip, its teeth are kept.

A smiling photo shows teeth (and dark corners) between its lips. Closing that mouth by warping alone
squashes them into a white strip with dark notches, so before any warping the interior is found by
colour (teeth are brighter and less red than lips, the cavity darker) and covered with the lips' own
texture, mirrored in from above and below, meeting on a soft lip line. The teeth pixels are kept as an
RGBA patch: the mouth painter shows them again, fixed to the skull, when the mouth opens.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter, minimum_filter

from facecast.models.face import topology as T

MEET_AT = 0.4  # the lips meet 40 % of the way down the gap: the rest pose raises the jaw more than the lip
MIN_GAP_FRACTION = 0.02  # inner-lip gap / mouth width below which the photo's mouth counts as closed
MIN_TEETH_FRACTION = 0.02  # teeth pixels / mouth width²: fewer is noise (a glint), not a row of teeth


@dataclass
class PortraitMouth:
    """image: the portrait with its lips closed; teeth: RGBA patch of the photo's teeth at `teeth_origin`
    (portrait pixels of its top-left corner), or None; lip: the lips' RGB tone sampled from the photo."""

    image: np.ndarray
    teeth: np.ndarray | None
    teeth_origin: tuple[int, int]
    lip: np.ndarray


def _ring_mask(points: np.ndarray, shape: tuple[int, int], origin: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points - origin).astype(np.int32)], (1,))
    return mask.astype(bool)


def close_mouth(image: np.ndarray, landmarks: np.ndarray) -> PortraitMouth:
    """image: (S, S, 3) uint8 RGB portrait; landmarks: (468, 2) pixels. Returns a new image, not in place."""
    outer = landmarks[T.OUTER_LIP_RING]
    inner = landmarks[T.INNER_LIP_RING]
    width = float(np.linalg.norm(landmarks[61] - landmarks[291]))
    pad = max(4, int(0.08 * width))
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(outer.max(0)).astype(int) + pad, [w, h])
    origin = np.array([x0, y0], np.float64)
    roi = image[y0:y1, x0:x1]
    shape = (roi.shape[0], roi.shape[1])
    lab = cv2.cvtColor(roi, cv2.COLOR_RGB2LAB).astype(np.float32)
    lips_area = _ring_mask(outer, shape, origin)
    inner_area = _ring_mask(inner, shape, origin)
    lips_wide = cv2.dilate(lips_area.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    lip_only = lips_area & ~cv2.dilate(inner_area.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    lip_px = lip_only if lip_only.any() else lips_area
    lip_lab = np.median(lab[lip_px], axis=0)
    lip_rgb = np.median(roi[lip_px], axis=0).astype(np.float32)

    gap = _gap_px(landmarks)
    if gap < MIN_GAP_FRACTION * width:  # a closed mouth: nothing lies between the lips
        return PortraitMouth(image.copy(), None, (int(x0), int(y0)), lip_rgb)
    # Interior: brighter and less red than the lips (teeth), or much darker (cavity, corners), near the
    # inner lip line (a glossy highlight on the lower lip is bright too, but further away).
    light, red = lab[..., 0], lab[..., 1]
    teeth = (light > lip_lab[0] + 10) & (red < lip_lab[1] - 5)
    dark = light < 0.6 * lip_lab[0]
    reach = int(round(0.35 * gap + 2))
    near = cv2.dilate(
        inner_area.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
    )
    core = cv2.erode(lips_area.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & near.astype(bool)
    # Below the inner lower lip only a little: the lower lip's glossy highlight is not a tooth.
    lower = landmarks[T.INNER_LIP_LOWER] - origin
    order = np.argsort(lower[:, 0])
    lower_y = np.interp(np.arange(shape[1]), lower[order, 0], lower[order, 1])
    core &= np.arange(shape[0])[:, None] <= lower_y[None, :] + 2 + 0.1 * gap
    # The dark corners of a wide smile reach past the corner landmarks: look a little further sideways.
    sideways = cv2.dilate(near, np.ones((1, 2 * int(0.06 * width) + 1), np.uint8)).astype(bool)
    interior = (teeth & core) | (dark & sideways & lips_wide) | inner_area
    interior = cv2.morphologyEx(interior.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    interior = cv2.morphologyEx(interior, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
    teeth &= interior
    teeth = _large_parts(teeth, 0.002 * width * width)  # a glint on the lower lip is not a tooth

    patch = None
    if teeth.sum() > MIN_TEETH_FRACTION * width * width:
        alpha = cv2.GaussianBlur(teeth.astype(np.float32), (0, 0), 0.7)
        patch = np.dstack([roi.astype(np.float32), 255.0 * alpha]).astype(np.uint8)

    filled = _fill_columns(roi, interior, lips_area)
    out = image.copy()
    out[y0:y1, x0:x1] = filled
    return PortraitMouth(out, patch, (int(x0), int(y0)), lip_rgb)


def _large_parts(mask: np.ndarray, min_area: float) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    return np.isin(labels, keep[keep > 0])


def _gap_px(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[13] - landmarks[14]))


def _spans(interior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed top and bottom row of the interior per column (a jagged threshold must not streak)."""
    cols = np.flatnonzero(interior.any(0))
    c = np.arange(cols[0], cols[-1] + 1)
    top = np.array([np.flatnonzero(interior[:, x])[0] if interior[:, x].any() else -1 for x in c], np.float32)
    bot = np.array(
        [np.flatnonzero(interior[:, x])[-1] if interior[:, x].any() else -1 for x in c], np.float32
    )
    have = top >= 0
    top = np.interp(c, c[have], top[have]).astype(np.float32)
    bot = np.interp(c, c[have], bot[have]).astype(np.float32)
    # The top takes the highest neighbour (teeth reach up between the gum shadows), the bottom the median.
    top = np.minimum(median_filter(top, size=7, mode="nearest"), minimum_filter(top, size=3)) - 1.0
    bot = median_filter(bot, size=7, mode="nearest") + 1.0
    return c, top, bot


def _fill_columns(roi: np.ndarray, interior: np.ndarray, lips_area: np.ndarray) -> np.ndarray:
    """Each column's interior span filled with the lips mirrored in from above and below."""
    if not interior.any():
        return roi.copy()
    rows = np.arange(roi.shape[0], dtype=np.float32)[:, None]
    map_x = np.tile(np.arange(roi.shape[1], dtype=np.float32), (roi.shape[0], 1))
    map_y = np.tile(rows, (1, roi.shape[1]))
    span = np.zeros(roi.shape[:2], np.float32)
    meet = np.full(roi.shape[1], -100.0, np.float32)
    lip_rows = np.where(lips_area, rows, np.nan)
    for x, top, bot in zip(*_spans(interior), strict=True):
        lip_top, lip_bot = (
            np.nanmin(lip_rows[:, x], initial=top - 4),
            np.nanmax(lip_rows[:, x], initial=bot + 4),
        )
        mid = top + MEET_AT * (bot - top)
        # Mirror about the span's edges, squeezed so the source stays inside the lip's own thickness.
        k_up = min(1.0, 0.8 * max(top - lip_top, 1.0) / max(mid - top, 1.0))
        k_lo = min(1.0, 0.8 * max(lip_bot - bot, 1.0) / max(bot - mid, 1.0))
        y = rows[:, 0]
        inside = (y >= np.floor(top)) & (y <= np.ceil(bot))
        span[:, x] = np.clip(np.minimum(y - top + 1.0, bot - y + 1.0), 0.0, 1.0)
        mirrored = np.where(y <= mid, top - (y - top) * k_up, bot + (bot - y) * k_lo)
        map_y[:, x] = np.where(inside, mirrored, y)
        meet[x] = mid
    filled = cv2.remap(roi, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(
        np.float32
    )
    # The lip line: a soft darker line where the lips meet, as on a closed mouth.
    line = 1.0 - 0.12 * np.exp(-(((rows - meet[None, :]) / 1.6) ** 2))
    filled *= np.where(span > 0, line, 1.0)[..., None]
    alpha = cv2.GaussianBlur(span, (0, 0), 0.8)[..., None]
    return np.clip(roi * (1 - alpha) + filled * alpha, 0, 255).astype(np.uint8)
