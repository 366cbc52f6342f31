"""MediaPipe's face-geometry procedure: metric 468-vertex mesh and facial transformation matrix.

Landmarks from the face mesh are lifted into metric 3D under the perspective camera of docs/aniportrait.md §3
(vertical FOV 63°, near 1), the scale is estimated in two passes by weighted orthogonal Procrustes
against the canonical face model, and the final fit gives the 4x4 pose (canonical → camera space).
The returned mesh is the detected face expressed in canonical space (so pose is factored out).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from facecast.models.face.projection import FOV_Y_DEG, NEAR


@dataclass(frozen=True)
class CanonicalFace:
    vertices: np.ndarray  # (468, 3) float64, cm, y up
    triangles: np.ndarray  # (898, 3) int
    basis_ids: np.ndarray  # (33,) landmark ids used by the Procrustes fit
    basis_weights: np.ndarray  # (33,)


@lru_cache(maxsize=1)
def canonical_face() -> CanonicalFace:
    text = resources.files("facecast.assets").joinpath("face_geometry/canonical_face_model.json").read_text()
    data = json.loads(text)
    basis = data["procrustes_landmark_basis"]
    return CanonicalFace(
        vertices=np.asarray(data["vertices"], np.float64),
        triangles=np.asarray(data["triangles"], np.int64),
        basis_ids=np.array([b["landmark_id"] for b in basis], np.int64),
        basis_weights=np.array([b["weight"] for b in basis], np.float64),
    )


def weighted_procrustes(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Similarity transform (4, 4) minimising sum_i w_i |s R source_i + t - target_i|^2 (Umeyama)."""
    w = weights / weights.sum()
    mu_s = (w[:, None] * source).sum(0)
    mu_t = (w[:, None] * target).sum(0)
    cs, ct = source - mu_s, target - mu_t
    cov = (w[:, None] * ct).T @ cs  # (3, 3) target x source
    u, _, vt = np.linalg.svd(cov)
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # reflection → proper rotation
        d[2, 2] = -1.0
    rot = u @ d @ vt
    scale = float((w[:, None] * ct * (cs @ rot.T)).sum() / (w[:, None] * cs * cs).sum())
    m = np.eye(4)
    m[:3, :3] = scale * rot
    m[:3, 3] = mu_t - scale * rot @ mu_s
    return m


def _frustum(width: int, height: int) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the near plane."""
    h = 2.0 * NEAR * math.tan(0.5 * math.radians(FOV_Y_DEG))
    w = h * width / height
    return -0.5 * w, 0.5 * w, -0.5 * h, 0.5 * h


def fit_face_geometry(landmarks: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Metric mesh and facial transformation matrix from normalised face-mesh landmarks.

    landmarks: (>=468, 3) normalised (x, y in [0, 1] of width/height, z like x).
    Returns (mesh (468, 3) float64 in canonical space, cm; matrix (4, 4) float64 canonical → camera).
    """
    canon = canonical_face()
    left, right, bottom, top = _frustum(width, height)
    screen = np.asarray(landmarks[:468], np.float64).copy()
    # Project onto the near plane (origin top-left → flip y); z shares x's scale.
    screen[:, 0] = screen[:, 0] * (right - left) + left
    screen[:, 1] = (1.0 - screen[:, 1]) * (top - bottom) + bottom
    screen[:, 2] = screen[:, 2] * (right - left)
    depth_offset = screen[:, 2].mean()

    ids, weights = canon.basis_ids, canon.basis_weights

    def estimate_scale(points: np.ndarray) -> float:
        m = weighted_procrustes(canon.vertices[ids], points[ids], weights)
        return float(np.linalg.norm(m[:3, 0]))

    def to_metric(scale: float) -> np.ndarray:
        pts = screen.copy()
        pts[:, 2] = (pts[:, 2] - depth_offset + NEAR) / scale
        pts[:, :2] = pts[:, :2] * pts[:, 2:3] / NEAR  # unproject x, y at that depth
        pts[:, 2] *= -1.0  # camera looks down -z (right-handed)
        return pts

    flipped = screen.copy()
    flipped[:, 2] *= -1.0
    first = estimate_scale(flipped)
    second = estimate_scale(to_metric(first))
    metric = to_metric(first * second)
    matrix = weighted_procrustes(canon.vertices[ids], metric[ids], weights)
    inv = np.linalg.inv(matrix)
    mesh = metric @ inv[:3, :3].T + inv[:3, 3]
    return mesh, matrix
