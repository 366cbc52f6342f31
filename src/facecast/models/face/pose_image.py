"""AniPortrait's pose images: coloured face-contour lines on black (docs/aniportrait.md §3).

The Lmk2Video PoseGuider was trained on exactly these drawings, so every detail matters: a black
512x512 canvas whatever the target size, 114 edges in a fixed order and colour, `cv2.line`
thickness 2 (LINE_8), landmarks outside [0, 1] dropped with their edges, then one INTER_LINEAR
resize to (W, H). Colours are literal channel values (c0, c1, c2) fed to the network as they are.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CANVAS_SIZE = 512
LINE_THICKNESS = 2

Color = tuple[int, int, int]

# Face oval without the forehead, in upstream's draw order.
FACE_OVAL_EDGES: tuple[tuple[int, int], ...] = (
    (176, 149), (150, 136), (356, 454), (58, 132), (152, 148), (361, 288), (251, 389), (132, 93),
    (389, 356), (400, 377), (136, 172), (377, 152), (323, 361), (172, 58), (454, 323), (365, 379),
    (379, 378), (148, 176), (93, 234), (397, 365), (149, 150), (288, 397), (234, 127), (378, 400),
    (127, 162), (162, 21),
)  # fmt: skip
# mediapipe's FACEMESH_* frozensets, in their (CPython tuple-hash) iteration order, which is the draw order.
LEFT_EYE_EDGES: tuple[tuple[int, int], ...] = (
    (374, 380), (390, 373), (249, 390), (385, 384), (373, 374), (263, 466), (387, 386), (381, 382),
    (384, 398), (466, 388), (386, 385), (388, 387), (263, 249), (380, 381), (398, 362), (382, 362),
)  # fmt: skip
LEFT_EYEBROW_EDGES: tuple[tuple[int, int], ...] = (
    (334, 296), (276, 283), (293, 334), (295, 285), (296, 336), (282, 295), (283, 282), (300, 293),
)  # fmt: skip
RIGHT_EYE_EDGES: tuple[tuple[int, int], ...] = (
    (154, 155), (33, 7), (246, 161), (159, 158), (144, 145), (173, 133), (158, 157), (163, 144),
    (153, 154), (7, 163), (161, 160), (157, 173), (33, 246), (160, 159), (145, 153), (155, 133),
)  # fmt: skip
RIGHT_EYEBROW_EDGES: tuple[tuple[int, int], ...] = (
    (46, 53), (66, 107), (52, 65), (53, 52), (63, 105), (70, 63), (65, 55), (105, 66),
)  # fmt: skip
# Lips as 8 polylines (vertex chains) with their colours.
LIP_POLYLINES: tuple[tuple[tuple[int, ...], Color], ...] = (
    ((61, 146, 91, 181, 84, 17), (10, 180, 20)),  # outer bottom-left
    ((17, 314, 405, 321, 375, 291), (20, 10, 180)),  # outer bottom-right
    ((78, 95, 88, 178, 87, 14), (100, 100, 30)),  # inner bottom-left
    ((14, 317, 402, 318, 324, 308), (100, 150, 50)),  # inner bottom-right
    ((61, 185, 40, 39, 37, 0), (20, 80, 100)),  # outer top-left
    ((0, 267, 269, 270, 409, 291), (80, 100, 20)),  # outer top-right
    ((78, 191, 80, 81, 82, 13), (120, 100, 200)),  # inner top-left
    ((13, 312, 311, 310, 415, 308), (150, 120, 100)),  # inner top-right
)


def _build_edges() -> tuple[tuple[int, int, Color], ...]:
    groups: list[tuple[tuple[tuple[int, int], ...], Color]] = [
        (FACE_OVAL_EDGES, (10, 200, 10)),
        (LEFT_EYE_EDGES, (180, 200, 10)),
        (LEFT_EYEBROW_EDGES, (180, 220, 10)),
        (RIGHT_EYE_EDGES, (10, 200, 180)),
        (RIGHT_EYEBROW_EDGES, (10, 220, 180)),
    ]
    for chain, color in LIP_POLYLINES:
        groups.append((tuple(zip(chain[:-1], chain[1:], strict=True)), color))
    return tuple((i, j, color) for edges, color in groups for i, j in edges)


POSE_EDGES: tuple[tuple[int, int, Color], ...] = _build_edges()
"""The 114 (i, j, colour) edges in draw order."""


def _pixel_coords(
    points: np.ndarray, width: int, height: int, normalized: bool
) -> list[tuple[int, int] | None]:
    """Canvas pixel of each landmark, or None where it is outside [0, 1] (mediapipe's drawing rules)."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    if not normalized:
        xy = xy / np.array([width, height], dtype=np.float64)
    # Upstream stores the normalised value in a protobuf float (float32), then multiplies in double.
    xy = xy.astype(np.float32).astype(np.float64)
    out: list[tuple[int, int] | None] = []
    for x, y in xy:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            out.append(None)
            continue
        out.append(
            (
                min(math.floor(x * CANVAS_SIZE), CANVAS_SIZE - 1),
                min(math.floor(y * CANVAS_SIZE), CANVAS_SIZE - 1),
            )
        )
    return out


def draw_pose_canvas(points: np.ndarray, width: int, height: int, *, normalized: bool) -> np.ndarray:
    """The 512x512 canvas before the final resize.

    points: (V, 2+) with V >= 468; pixel coordinates in a (width, height) image, or normalised
    [0, 1] coordinates when `normalized` (then width/height are unused here). Returns (512, 512, 3) uint8.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 2 or pts.shape[0] < 468:
        raise ValueError(f"expected landmarks of shape (V>=468, 2 or 3), got {pts.shape}")
    pixels = _pixel_coords(pts, width, height, normalized)
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE, 3), dtype=np.uint8)
    for i, j, color in POSE_EDGES:
        a, b = pixels[i], pixels[j]
        if a is not None and b is not None:
            cv2.line(canvas, a, b, color, thickness=LINE_THICKNESS, lineType=cv2.LINE_8)
    return canvas


def draw_pose_image(points: np.ndarray, width: int, height: int, *, normalized: bool) -> np.ndarray:
    """One pose image (height, width, 3) uint8 from landmarks (V, 2+) (see `draw_pose_canvas`).

    normalized=True for the reference's 478 normalised landmarks, False for projected meshes in pixels.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    canvas = draw_pose_canvas(points, width, height, normalized=normalized)
    if (width, height) == (CANVAS_SIZE, CANVAS_SIZE):
        return canvas
    return np.asarray(cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR))


def draw_pose_images(points: np.ndarray, width: int, height: int, *, normalized: bool = False) -> np.ndarray:
    """Batch of pose images: points (N, V, 2+) → (N, height, width, 3) uint8."""
    pts = np.asarray(points)
    if pts.ndim != 3:
        raise ValueError(f"expected a landmark sequence of shape (N, V, 2+), got {pts.shape}")
    out = np.zeros((pts.shape[0], height, width, 3), dtype=np.uint8)
    for k in range(pts.shape[0]):
        out[k] = draw_pose_image(pts[k], width, height, normalized=normalized)
    return out
