"""The default renderer: warps the portrait so its landmarks follow the driven mesh. No model weights.

Per avatar (once): control points = the 468 detected landmarks, rings of anchors around the head
(following the head's rigid motion with decreasing weight: hair, then background) and the image
border (fixed); a Delaunay triangulation of them gives every pixel of a half-resolution grid its
barycentric weights, stored as a sparse matrix.
Per frame: project the driven mesh (camera of docs/aniportrait.md §3) → landmark displacements; anchors
take the head's rigid 2D motion; sparse matrix × displacements → dense field, upsampled; the backward map
x − d(x − d(x)) (one fixed-point step inverts the forward field well for smooth motion); cv2.remap
with border replication (never tears at the image border); paint the mouth interior where lips part.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.face import topology as T
from facecast.models.face.projection import pose_matrix, project_with_matrices
from facecast.models.render.mouth import paint_mouth

# (scale of the face oval about its centre, weight of the head's rigid motion) per anchor ring.
ANCHOR_RINGS = [(1.25, 1.0), (1.6, 0.55), (2.1, 0.15), (2.7, 0.0)]
NECK_WEIGHT = 0.45  # anchors below the chin follow the head less: the neck bends, shoulders stay
GRID_STEP = 2  # dense field computed at half resolution, then upsampled
GRID_OFFSET = (GRID_STEP - 1) / 2.0  # full-resolution coordinate of grid cell 0's centre
BORDER_POINTS = 16  # fixed points per image side


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform src → dst (N, 2)."""
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    return m if m is not None else np.array([[1, 0, 0], [0, 1, 0]], np.float64)


class WarpRenderer:
    """render(motion) → (size, size, 3) uint8 RGB. Plain synchronous object; cost ≈ a few ms per frame."""

    window = 1  # frames per render call
    latency_frames = 0

    def __init__(self, avatar: Avatar, size: int | None = None) -> None:
        self.size = size or avatar.size
        s = self.size
        image = avatar.image
        if image.shape[0] != s:
            image = cv2.resize(
                image, (s, s), interpolation=cv2.INTER_AREA if image.shape[0] > s else cv2.INTER_CUBIC
            )
        self.image = np.ascontiguousarray(image)
        self.mesh = np.asarray(avatar.mesh, np.float64)
        self.matrix = np.asarray(avatar.matrix, np.float64)
        self.landmarks = avatar.landmarks[:468, :2].astype(np.float64) * s
        # Projection of the undeformed mesh: displacements are measured from it, so the small residual of
        # the geometry fit never moves the portrait.
        self.ref_proj = project_with_matrices(self.mesh, self.matrix, s, s)
        self.ref_gap_px = float(np.linalg.norm(self.landmarks[14] - self.landmarks[13]))
        self.anchors, self.anchor_weights = self._anchors()
        points = np.concatenate([self.landmarks, self.anchors])
        self._weights = self._barycentric_matrix(points)
        gh = (s + GRID_STEP - 1) // GRID_STEP
        self._grid_shape = (gh, gh)
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
        self._base_x, self._base_y = xs, ys
        g = np.arange(gh, dtype=np.float32) * GRID_STEP + GRID_OFFSET
        self._grid_x, self._grid_y = np.meshgrid(g, g)

    def _anchors(self) -> tuple[np.ndarray, np.ndarray]:
        oval = self.landmarks[T.FACE_OVAL]
        center = oval.mean(0)
        chin_y = self.landmarks[152, 1]
        pts, weights = [], []
        for scale, weight in ANCHOR_RINGS:
            ring = center + scale * (oval - center)
            w = np.full(len(ring), weight)
            w[ring[:, 1] > chin_y] *= NECK_WEIGHT
            pts.append(ring)
            weights.append(w)
        s = self.size
        edge = np.linspace(-1.0, s, BORDER_POINTS)
        border = np.concatenate(
            [np.stack([edge, np.full_like(edge, -1.0)], 1), np.stack([edge, np.full_like(edge, s)], 1),
             np.stack([np.full_like(edge, -1.0), edge], 1), np.stack([np.full_like(edge, s), edge], 1)]
        )  # fmt: skip
        pts.append(border)
        weights.append(np.zeros(len(border)))
        return np.concatenate(pts), np.concatenate(weights)

    def _barycentric_matrix(self, points: np.ndarray) -> sparse.csr_matrix:
        """Sparse (grid pixels x points) matrix of barycentric weights of each grid pixel's triangle."""
        tri = Delaunay(points)
        g = np.arange(0, self.size, GRID_STEP, dtype=np.float64) + GRID_OFFSET
        gx, gy = np.meshgrid(g, g)
        q = np.stack([gx.ravel(), gy.ravel()], 1)
        simplex = tri.find_simplex(q)
        inside = simplex >= 0
        trans = tri.transform[simplex[inside]]
        b = np.einsum("nij,nj->ni", trans[:, :2], q[inside] - trans[:, 2])
        bary = np.concatenate([b, 1.0 - b.sum(1, keepdims=True)], 1)
        rows = np.repeat(np.flatnonzero(inside), 3)
        cols = tri.simplices[simplex[inside]].ravel()
        return sparse.csr_matrix(
            (bary.ravel().astype(np.float32), (rows, cols)), shape=(len(q), len(points)), dtype=np.float32
        )

    def displacements(self, motion: MotionFrame) -> np.ndarray:
        """(468 + anchors, 2) pixel displacements of the control points for one motion frame."""
        s = self.size
        posed = self.matrix @ pose_matrix(motion.pose)
        driven = project_with_matrices(self.mesh + motion.mesh_offsets, posed, s, s)
        d_lmk = driven - self.ref_proj
        if np.any(motion.pose):
            rigid = project_with_matrices(self.mesh, posed, s, s)
            m = _similarity(self.ref_proj[T.FACE_OVAL], rigid[T.FACE_OVAL])
            moved = self.anchors @ m[:, :2].T + m[:, 2]
            d_anchor = (moved - self.anchors) * self.anchor_weights[:, None]
        else:
            d_anchor = np.zeros_like(self.anchors)
        return np.concatenate([d_lmk, d_anchor])

    def backward_map(self, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Control-point displacements → (map_x, map_y) float32 (size, size) source coordinates.

        Backward map src = x - d(src), one fixed-point step from x - d(x); the step runs on the
        half-resolution grid (the field is smooth), then the field is upsampled once.
        """
        s = self.size
        field = (self._weights @ disp.astype(np.float32)).reshape(*self._grid_shape, 2)
        src_x = (self._grid_x - field[..., 0] - GRID_OFFSET) / GRID_STEP  # in grid cells
        src_y = (self._grid_y - field[..., 1] - GRID_OFFSET) / GRID_STEP
        refined = cv2.remap(field, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        full = cv2.resize(refined, (s, s), interpolation=cv2.INTER_LINEAR)
        return self._base_x - full[..., 0], self._base_y - full[..., 1]

    def warp(self, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def paint(self, out: np.ndarray, disp: np.ndarray) -> None:
        """Mouth interior where the lips part further than in the portrait."""
        target = self.landmarks + disp[:468]
        # Up to the portrait's own opening its real mouth interior shows; beyond it, a synthetic one.
        extra_gap = float(np.linalg.norm(target[14] - target[13])) - 1.3 * self.ref_gap_px
        paint_mouth(out, target[T.INNER_LIP_UPPER], target[T.INNER_LIP_LOWER[::-1]], extra_gap)

    def render(self, motion: MotionFrame) -> np.ndarray:
        disp = self.displacements(motion)
        out = self.warp(*self.backward_map(disp))
        self.paint(out, disp)
        return out
