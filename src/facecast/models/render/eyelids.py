"""Upper eyelids that close over the eye, made from the portrait's own lid skin.

Warping alone cannot blink: it squeezes the eye into a slit with the iris still in it. Instead each
upper lid is painted onto the portrait (before the frame's warp, so it follows the head) as a sheet that
comes down from the lid's crease: its skin is the skin above the eye mirrored downwards (seamless
where it leaves the photo, squeezed to stay below the brow), shaded darker towards its margin, with a
dark lash line along the margin and a soft shadow on the eye just below. At amount 1 it reaches past
the lower lid margin, so no iris or sclera pixel remains. Per frame only two small patches change.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facecast.models.face import topology as T

COVER_ABOVE = 0.18  # the sheet starts this far (x the eye's height) above the upper margin: hides the lashes
OVERLAP = 0.12  # and at amount 1 ends this far below the lower margin
MAX_SOURCE_TO_BROW = 0.7  # the mirrored skin never comes from higher than 70 % of the way to the brow
# cv2.remap's second map when the first holds both x and y (an empty one: its stubs do not take None).
XY_MAP = np.empty(0, np.float32)
# Lid amounts are drawn in steps of 1/LID_STEPS (a step moves the lid's margin ~0.1 px at 512 px), so
# each eye's patches are made once per step and reused: the lids rest slightly lowered (0.01-0.03) in
# most frames and every blink passes the same amounts, so making a patch (~0.3 ms) becomes rare.
LID_STEPS = 128


@dataclass
class _Eye:
    x0: int  # ROI in portrait pixels
    y0: int
    s: np.ndarray  # (h, w) along the eye, 0 at the outer/left corner .. 1 at the other
    within: np.ndarray  # (h, w) 1 between the corners, fading to 0 just beyond them
    top: np.ndarray  # (h, w) signed px below the sheet's top edge (upper margin - COVER_ABOVE x height)
    span: np.ndarray  # (h, w) px from the sheet's top to past the lower margin (its length at amount 1)
    height: float  # the eye's open height at its middle, px
    sheet: np.ndarray  # (h, w, 3) float32: the fully closed lid over the ROI
    roi: np.ndarray  # (h, w, 3) float32: the portrait's pixels there
    lash: np.ndarray  # (3,) RGB


class EyeLids:
    """lidded(amount) → the two eye patches with the lids lowered; paint(frame, maps, amount) uses them."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.eyes = [
            self._eye(image, landmarks, up, lo, brow)
            for up, lo, brow in (
                (T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER, T.RIGHT_BROW_LOWER),
                (T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER, T.LEFT_BROW_LOWER),
            )
        ]
        self._patches: list[dict[int, np.ndarray]] = [{} for _ in self.eyes]  # per eye: step -> patch

    @staticmethod
    def _eye(
        image: np.ndarray, lm: np.ndarray, up_idx: list[int], lo_idx: list[int], brow_idx: list[int]
    ) -> _Eye:
        upper, lower, brow = lm[up_idx], lm[lo_idx], lm[brow_idx]
        a, b = (upper[0], upper[-1]) if upper[0, 0] < upper[-1, 0] else (upper[-1], upper[0])
        length = float(np.linalg.norm(b - a))
        ex = (b - a) / length
        ey = np.array([-ex[1], ex[0]])  # image y is down: ey points below the eye
        local = lambda p: np.stack([(p - a) @ ex, (p - a) @ ey], -1)  # noqa: E731 - tiny local helper
        up, lo, br = local(upper), local(lower), local(brow)
        height = float(np.max(lo[:, 1] - np.interp(lo[:, 0], *_sorted(up))))
        h_px = max(height, 2.0)
        top_room = float(np.median(np.interp(br[:, 0], *_sorted(up)) - br[:, 1]))  # margin to brow, px
        pad_x = 0.15 * length
        reach_up = COVER_ABOVE * h_px + min(MAX_SOURCE_TO_BROW * top_room, 2.0 * h_px) + 2
        corners = np.array([a - pad_x * ex - reach_up * ey, b + pad_x * ex - reach_up * ey,
                            a - pad_x * ex + 1.6 * h_px * ey, b + pad_x * ex + 1.6 * h_px * ey])  # fmt: skip
        hh, ww = image.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), [ww, hh])
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        pts = np.stack([xx, yy], -1)
        sl = local(pts)
        s, t = sl[..., 0], sl[..., 1]
        w_up = np.interp(s, *_sorted(up))
        w_lo = np.interp(s, *_sorted(lo))
        eye_h = np.maximum(w_lo - w_up, 0.0)
        top = t - (w_up - COVER_ABOVE * h_px)
        span = eye_h + (COVER_ABOVE + OVERLAP) * h_px
        # The sheet's skin: the skin above its top edge, mirrored, squeezed below MAX_SOURCE_TO_BROW.
        room = max(MAX_SOURCE_TO_BROW * top_room - COVER_ABOVE * h_px, 2.0)
        k = np.minimum(1.0, room / np.maximum(span, 1.0))
        src_t = (w_up - COVER_ABOVE * h_px) - np.maximum(top, 0.0) * k - 1.0
        src = a + s[..., None] * ex + src_t[..., None] * ey
        roi = image[y0:y1, x0:x1].astype(np.float32)
        sheet = cv2.remap(
            image, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32), cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ).astype(np.float32)  # fmt: skip
        sn = np.clip(s / length, 0.0, 1.0)
        sheet *= (0.96 + 0.06 * np.sin(np.pi * sn))[..., None]  # a convex lid: lighter in its middle
        # Lashes: the darkest tenth of the pixels along the upper margin.
        band = np.abs(t - w_up) < max(1.0, 0.12 * h_px)
        band &= (s > 0.15 * length) & (s < 0.85 * length)
        grey = roi.mean(-1)
        lash = (
            np.median(roi[band & (grey <= np.percentile(grey[band], 10))], axis=0)
            if band.any()
            else roi.min((0, 1))
        )
        within = np.clip(np.minimum(s, length - s) / 2.0 + 0.5, 0.0, 1.0).astype(np.float32)
        return _Eye(int(x0), int(y0), sn.astype(np.float32), within, top.astype(np.float32),
                    span.astype(np.float32), h_px, sheet, roi, lash.astype(np.float32))  # fmt: skip

    @staticmethod
    def lidded(eye: _Eye, amount: float) -> np.ndarray:
        """(h, w, 3) uint8: the eye's ROI with its upper lid lowered by amount (0 open .. 1 closed)."""
        cover = COVER_ABOVE * eye.height
        below = eye.top - cover - amount * (eye.span - cover)  # px below the lid margin (< 0: on the lid)
        # The sheet takes over the photo's own lashes gradually, so a lid starting to move never pops.
        start = eye.top - cover * (1.0 - min(1.0, amount / 0.3))
        on_lid = np.clip(0.5 - below, 0.0, 1.0) * np.clip(start / 2.0 + 0.5, 0.0, 1.0) * eye.within
        margin_shade = 1.0 - 0.22 * np.exp(np.minimum(below, 0.0) / (0.25 * eye.height + 1.0))
        lid = eye.sheet * margin_shade[..., None]
        sigma = max(0.7, 0.08 * eye.height)
        taper = np.sqrt(np.clip(np.sin(np.pi * eye.s), 0.0, 1.0))
        lash = np.exp(-(((below - 0.4 * sigma) / sigma) ** 2)) * taper * min(1.0, amount / 0.3)
        # The lid's shadow on the eye just below its margin.
        near = np.where(below > 0, np.exp(-np.maximum(below, 0.0) / (0.15 * eye.height + 0.5)), 0.0)
        shadow = 1.0 - 0.3 * min(1.0, amount / 0.3) * taper * near * eye.within
        base = eye.roi * shadow[..., None]
        out = base * (1 - on_lid[..., None]) + lid * on_lid[..., None]
        out = out * (1 - 0.85 * lash[..., None]) + eye.lash * 0.85 * lash[..., None]
        return np.clip(out, 0, 255).astype(np.uint8)

    def paint(self, frame: np.ndarray, source_map: np.ndarray, amount: float) -> None:
        """Re-sample the frame where its sources (source_map: (H, W, 2) x, y) fall in an eye patch, from the
        lidded patch (in place)."""
        if amount <= 0.01:
            return
        step = round(min(amount, 1.0) * LID_STEPS)
        for eye, patches in zip(self.eyes, self._patches, strict=True):
            patch = patches.get(step)
            if patch is None:
                patch = patches[step] = self.lidded(eye, step / LID_STEPS)
            ph, pw = patch.shape[:2]
            # Output pixels whose source lies in the patch: searched near the patch (the head moves the eye
            # by far less than half the patch), so the test stays cheap.
            oy0, ox0 = max(eye.y0 - ph // 2, 0), max(eye.x0 - pw // 2, 0)
            oy1, ox1 = eye.y0 + ph + ph // 2, eye.x0 + pw + pw // 2
            mx, my = source_map[oy0:oy1, ox0:ox1, 0], source_map[oy0:oy1, ox0:ox1, 1]
            inside = (mx >= eye.x0) & (mx < eye.x0 + pw - 1) & (my >= eye.y0) & (my < eye.y0 + ph - 1)
            ys, xs = np.nonzero(inside)
            if ys.size == 0:
                continue
            sy0, sy1, sx0, sx1 = oy0 + ys.min(), oy0 + ys.max() + 1, ox0 + xs.min(), ox0 + xs.max() + 1
            dst = frame[sy0:sy1, sx0:sx1].copy()
            cv2.remap(
                patch, source_map[sy0:sy1, sx0:sx1] - np.array([eye.x0, eye.y0], np.float32), XY_MAP, cv2.INTER_LINEAR,
                dst=dst, borderMode=cv2.BORDER_TRANSPARENT,
            )  # fmt: skip
            frame[sy0:sy1, sx0:sx1] = dst


def _sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
