"""The default renderer: warps the portrait so its landmarks follow the driven mesh. No model weights.

Per avatar (once): control points = the 468 detected landmarks, rings of anchors around the head
(following the head's rigid motion with decreasing weight: hair, then background) and the image
border (fixed); a Delaunay triangulation of them gives every pixel of a half-resolution grid its
barycentric weights, stored as a sparse matrix.
Per frame: project the driven mesh (camera of docs/aniportrait.md §3) → landmark displacements; anchors
take the head's rigid 2D motion; sparse matrix × displacements → dense field, upsampled; the backward map
x − d(x − d(x)) (one fixed-point step inverts the forward field well for smooth motion); cv2.remap
with border replication (never tears at the image border); then the upper eyelids (eyelids.py) and the
mouth interior where the lips part (mouth.py).

The portrait is first given closed lips (lips.py), so the rest pose and every closure show lip, never
the photo's teeth squashed between the lips. Blinks are not warped: the rig's upper-lid motion is taken
out of the mesh here and the lid is painted over the eye instead; the lower lid still rises by warping.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.face import topology as T
from facecast.models.face.matte import person_matte
from facecast.models.face.projection import pose_matrix, project_with_matrices
from facecast.models.face.rig import FaceRig
from facecast.models.render.background import Background, Compositor, decontaminate
from facecast.models.render.eyelids import XY_MAP, EyeLids
from facecast.models.render.lips import close_mouth
from facecast.models.render.mouth import MouthPainter

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


@dataclass
class Solved:
    """One frame's geometry: control-point displacements (px), the head's rigid 2x3 affine (portrait →
    frame), how far the jaw has moved the lower teeth (px) and the lid amount (0 open .. 1 closed)."""

    disp: np.ndarray
    skull: np.ndarray
    jaw_shift: np.ndarray
    lids: float


def _sclera(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """RGB of the whites of the eyes (the brightest, least saturated pixels inside the eye contours)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for upper, lower in ((T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER), (T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER)):
        cv2.fillPoly(mask, [np.round(landmarks[upper + lower[::-1]]).astype(np.int32)], (1,))
    pixels = image[mask.astype(bool)].astype(np.float32)
    if len(pixels) < 10:
        return np.array([225, 220, 210], np.float32)
    score = pixels.mean(1) - (pixels.max(1) - pixels.min(1))  # bright and grey
    return np.median(pixels[score >= np.percentile(score, 80)], axis=0)


class WarpRenderer:
    """render(motion) → (size, size, 3) uint8 RGB. Plain synchronous object; cost ≈ a few ms per frame."""

    window = 1  # frames per render call
    latency_frames = 0

    def __init__(
        self,
        avatar: Avatar,
        size: int | None = None,
        rig: FaceRig | None = None,
        background: Background | None = None,
    ) -> None:
        self.size = size or avatar.size
        s = self.size
        image = avatar.image
        if image.shape[0] != s:
            image = cv2.resize(
                image, (s, s), interpolation=cv2.INTER_AREA if image.shape[0] > s else cv2.INTER_CUBIC
            )
        self.mesh = np.asarray(avatar.mesh, np.float64)
        self.matrix = np.asarray(avatar.matrix, np.float64)
        self.landmarks = avatar.landmarks[:468, :2].astype(np.float64) * s
        mouth = close_mouth(np.ascontiguousarray(image), self.landmarks)
        self.image = mouth.image
        self.mouth = MouthPainter(mouth, self.landmarks, _sclera(image, self.landmarks))
        self.eyelids = EyeLids(self.image, self.landmarks)
        self.rig = rig or FaceRig(self.mesh)
        self._upper_lid = self.rig.blink_upper.astype(np.float32)
        # Projection of the undeformed mesh: displacements are measured from it, so the small residual of
        # the geometry fit never moves the portrait.
        self.ref_proj = project_with_matrices(self.mesh, self.matrix, s, s)
        # The lower teeth follow the jaw, read at the middle of the lower lip (which the jaw carries),
        # from the rest pose (a smiling photo's rest raises the jaw).
        rest = project_with_matrices(self.mesh + self.rig.rest, self.matrix, s, s)
        self._rest_jaw = rest[14] - self.ref_proj[14]
        self.anchors, self.anchor_weights = self._anchors()
        points = np.concatenate([self.landmarks, self.anchors])
        self._weights = self._barycentric_matrix(points)
        if s % GRID_STEP:
            raise ValueError(f"the frame size must be a multiple of {GRID_STEP} pixels, not {s}")
        gh = s // GRID_STEP
        self._grid_shape = (gh, gh)
        g = np.arange(gh, dtype=np.float32) * GRID_STEP + GRID_OFFSET
        self._grid = np.dstack(np.meshgrid(g, g))  # (gh, gh, 2) full-resolution x, y of each grid cell
        self._grid_cells = (self._grid - GRID_OFFSET) / GRID_STEP  # the same in grid cells
        # A bilinear resize of the grid's coordinates gives every pixel its own coordinates exactly, except on
        # the outermost columns (x) and rows (y), where resize clamps: these corrections make it exact.
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
        upsampled = cv2.resize(self._grid, (s, s), interpolation=cv2.INTER_LINEAR)
        self._edge_fix_x = xs[:, [0, -1]] - upsampled[:, [0, -1], 0]
        self._edge_fix_y = ys[[0, -1]] - upsampled[[0, -1], :, 1]
        # The person's matte, warped with the image every frame, for any background but the photo's own.
        self.background = background or Background()
        self.matte: np.ndarray | None = None
        self.compositor: Compositor | None = None
        if self.background.needs_matte:
            matte = avatar.matte if avatar.matte is not None else person_matte(avatar.image)
            if matte.shape[0] != s:
                matte = cv2.resize(matte, (s, s), interpolation=cv2.INTER_AREA)
            self.matte = matte
            self.image = decontaminate(self.image, matte)  # no fringe of the photo's background
            self.compositor = Compositor(self.background, self.image, matte)

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

    def solve(self, motion: MotionFrame) -> Solved:
        """Control-point displacements and the teeth's motion for one motion frame."""
        s = self.size
        posed = self.matrix @ pose_matrix(motion.pose)
        offsets = motion.mesh_offsets - motion.blink * self._upper_lid  # the painted lid replaces this
        driven = project_with_matrices(self.mesh + offsets, posed, s, s)
        d_lmk = driven - self.ref_proj
        skull = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
        rigid = self.ref_proj
        if np.any(motion.pose):
            rigid = project_with_matrices(self.mesh, posed, s, s)
            skull = _similarity(self.ref_proj[T.FACE_OVAL], rigid[T.FACE_OVAL])
            moved = self.anchors @ skull[:, :2].T + skull[:, 2]
            d_anchor = (moved - self.anchors) * self.anchor_weights[:, None]
        else:
            d_anchor = np.zeros_like(self.anchors)
        jaw_shift = driven[14] - rigid[14] - skull[:, :2] @ self._rest_jaw
        return Solved(np.concatenate([d_lmk, d_anchor]), skull, jaw_shift, float(motion.blink))

    def backward_map(self, disp: np.ndarray) -> np.ndarray:
        """Control-point displacements → the (size, size, 2) float32 map of source x, y per pixel.

        Backward map src = x - d(src), one fixed-point step from x - d(x); the step runs on the
        half-resolution grid (the field is smooth), and the map is upsampled once, as one two-channel
        array (what cv2.remap takes fastest; half the passes of upsampling the field and subtracting it).
        """
        s = self.size
        field = (self._weights @ disp.astype(np.float32)).reshape(*self._grid_shape, 2)
        src = self._grid_cells - field / GRID_STEP
        refined = cv2.remap(field, src, XY_MAP, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        full: np.ndarray = cv2.resize(self._grid - refined, (s, s), interpolation=cv2.INTER_LINEAR)
        full[:, [0, -1], 0] += self._edge_fix_x
        full[[0, -1], :, 1] += self._edge_fix_y
        return full

    def warp(self, source_map: np.ndarray) -> np.ndarray:
        return cv2.remap(self.image, source_map, XY_MAP, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def paint(self, out: np.ndarray, solved: Solved, source_map: np.ndarray) -> None:
        """Eyelids, then the mouth interior where the lips part (in place)."""
        self.eyelids.paint(out, source_map, solved.lids)
        target = self.landmarks + solved.disp[:468]
        self.mouth.paint(
            out, target[T.INNER_LIP_UPPER], target[T.INNER_LIP_LOWER[::-1]], solved.skull, solved.jaw_shift
        )

    def render(self, motion: MotionFrame) -> np.ndarray:
        return self.render_layers(motion)[0]

    def render_layers(self, motion: MotionFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """The frame over its background, and the person's alpha for it (None with the photo's own
        background). With `transparent` the frame is the person's colour, straight (not premultiplied)."""
        solved = self.solve(motion)
        source_map = self.backward_map(solved.disp)
        out = self.warp(source_map)
        self.paint(out, solved, source_map)
        return self.composite(out, source_map)

    def composite(self, out: np.ndarray, source_map: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A painted frame over its background, and its alpha (None with the photo's own background)."""
        if self.compositor is None or self.matte is None:
            return out, None
        # The matte moves exactly as the image does: the same backward map, so the head never tears it.
        alpha = cv2.remap(self.matte, source_map, XY_MAP, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return self.compositor.compose(out, alpha), alpha
