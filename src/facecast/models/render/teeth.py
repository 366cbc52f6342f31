"""Rows of teeth drawn once per avatar as RGBA patches in portrait pixels, tinted from the face.

A row is a dental arch seen from the front: teeth narrow towards the corners as the arch turns away
(widths along the arch projected with a sine), each tooth convex (lighter in its middle), separated
by thin shadows, with rounded incisal corners and a gum band above the crowns; the whole row darkens
towards the mouth corners, where the cheeks shade it.
"""

from __future__ import annotations

import math

import numpy as np

# Crown widths from the middle outwards (mm): central and lateral incisor, canine, two premolars, molar.
UPPER_WIDTHS_MM = (8.5, 6.5, 7.5, 7.0, 6.5, 10.0)
LOWER_WIDTHS_MM = (5.0, 5.5, 6.5, 7.0, 7.0, 11.0)
ARCH_TURN_RAD = math.radians(72.0)  # how far the arch has turned away from the viewer at its last tooth


def tooth_edges(widths_mm: tuple[float, ...], half_width_px: float) -> np.ndarray:
    """x offsets (px, from the middle) of the tooth boundaries of a symmetric arch, left to right."""
    along = np.concatenate([[0.0], np.cumsum(widths_mm)]) / sum(widths_mm)  # 0..1 along half the arch
    half = half_width_px * np.sin(along * ARCH_TURN_RAD) / math.sin(ARCH_TURN_RAD)
    return np.concatenate([-half[:0:-1], half])


def draw_row(
    width_px: float,
    height_px: float,
    tone: np.ndarray,
    gum: np.ndarray,
    *,
    upper: bool,
) -> np.ndarray:
    """(H, W, 4) uint8 RGBA row of teeth, the incisal edge at the bottom (upper) or top (lower) row.

    width_px: across the mouth; height_px: crown height at the middle. tone / gum: RGB of enamel / gum.
    """
    w = max(8, int(math.ceil(width_px)))
    gum_px = 0.35 * height_px
    h = max(6, int(math.ceil(height_px + gum_px)))
    xs = np.arange(w, dtype=np.float32) + 0.5 - w / 2
    edges = tooth_edges(UPPER_WIDTHS_MM if upper else LOWER_WIDTHS_MM, w / 2)
    index = np.clip(np.searchsorted(edges, xs) - 1, 0, len(edges) - 2)
    left, right = edges[index], edges[index + 1]
    tooth_w = np.maximum(right - left, 1.0)
    t = (xs - left) / tooth_w  # 0..1 across each tooth
    u = np.abs(xs) / (w / 2)  # 0 in the middle, 1 at the corners
    crown = height_px * (1.0 - 0.45 * u**2)  # teeth further back show less below the lip
    # Rows from the gum (0) towards the incisal edge; a lower row is the same picture upside down.
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    depth = y - gum_px  # below the gum line
    corner_round = 0.18 * tooth_w * (1.0 - np.sin(np.pi * np.clip(t, 0, 1))) ** 2
    inside = (depth >= 0) & (depth <= crown - corner_round)
    convex = 0.8 + 0.2 * np.sin(np.pi * np.clip(t, 0, 1))
    gap_shadow = 1.0 - 0.2 * np.exp(-((np.minimum(t, 1 - t) * tooth_w / 0.9) ** 2))
    along = np.clip(depth / np.maximum(crown, 1.0), 0.0, 1.0)
    enamel = tone[None, None, :] * (0.9 + 0.1 * np.sin(np.pi * along))[..., None]
    # The last tenth towards the edge is translucent: a little greyer and darker.
    edge = np.clip((along - 0.88) / 0.12, 0.0, 1.0)[..., None]
    enamel = enamel * (1 - 0.25 * edge) + np.array([150, 150, 160], np.float32) * 0.25 * edge
    # Each tooth a shade of its own (seeded by its place in the row, so the picture is the same each time).
    own = np.random.default_rng(len(edges)).uniform(0.95, 1.03, len(edges) - 1)[index]
    shade = (convex * gap_shadow * own * (1.0 - 0.6 * u**2))[None, :, None]
    rgb = np.where(inside[..., None], enamel * shade, gum[None, None, :] * (1.0 - 0.5 * u**2)[None, :, None])
    alpha = np.clip(crown - corner_round - depth + 0.5, 0.0, 1.0) * (depth > -gum_px)
    alpha *= np.clip(1.0 - (u - 0.85) / 0.15, 0.0, 1.0)  # fade out behind the mouth corners
    out = np.dstack([np.clip(rgb, 0, 255), 255.0 * alpha]).astype(np.uint8)
    return out if upper else np.ascontiguousarray(out[::-1])
