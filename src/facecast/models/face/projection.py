"""Perspective projection of face meshes, exactly as AniPortrait does it (docs/aniportrait.md §3).

OpenGL perspective camera: vertical FOV 63°, near 1, far 10000, aspect W/H, Y flipped so the origin
is the image's top-left. Row-vector convention: ``v_h @ (T_ref @ E(pose)).T @ P``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

FOV_Y_DEG = 63.0
NEAR = 1.0
FAR = 10000.0


def perspective_matrix(aspect: float) -> np.ndarray:
    """(4, 4) float32 projection matrix in the row-vector form AniPortrait uses (flat GL matrix, .T)."""
    f = 1.0 / math.tan(math.radians(FOV_Y_DEG) / 2.0)
    denom = 1.0 / (NEAR - FAR)
    # m[14] is far*near/(near-far): upstream omits the usual factor 2; x and y are unaffected.
    flat = np.array(
        [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (NEAR + FAR) * denom, -1, 0, 0, FAR * NEAR * denom, 0],
        dtype=np.float32,
    )
    flat[5] *= -1.0  # flip Y: image origin at the top-left
    return flat.reshape(4, 4).T


def pose_matrix(pose: np.ndarray) -> np.ndarray:
    """E(pose): (4, 4) float64 from [rx, ry, rz (deg, extrinsic "xyz"), tx, ty, tz]."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", np.asarray(pose[:3], np.float64), degrees=True).as_matrix()
    m[:3, 3] = pose[3:6]
    return m


def project_with_matrices(meshes: np.ndarray, matrices: np.ndarray, width: int, height: int) -> np.ndarray:
    """Project meshes with per-frame model matrices.

    meshes: (N, V, 3) or (V, 3); matrices: (N, 4, 4) or (4, 4). Returns pixel coordinates (N, V, 2)
    or (V, 2) as float64.
    """
    single = meshes.ndim == 2
    meshes = np.atleast_3d(meshes) if not single else meshes[None]
    matrices = matrices[None] if matrices.ndim == 2 else matrices
    if matrices.shape[0] == 1 and meshes.shape[0] > 1:
        matrices = np.repeat(matrices, meshes.shape[0], axis=0)
    proj = perspective_matrix(width / height)
    v_h = np.concatenate([meshes, np.ones(meshes.shape[:2] + (1,))], axis=-1)
    clip = np.einsum("nvi,nji->nvj", v_h, matrices) @ proj
    ndc = clip[..., :2] / clip[..., 3:4]
    px = np.empty_like(ndc)
    px[..., 0] = (ndc[..., 0] + 1.0) / 2.0 * width
    px[..., 1] = (ndc[..., 1] + 1.0) / 2.0 * height
    return px[0] if single else px


def project_points(
    meshes: np.ndarray, ref_matrix: np.ndarray, poses: np.ndarray, width: int, height: int
) -> np.ndarray:
    """AniPortrait's project_points: meshes (N, V, 3), ref_matrix (4, 4), poses (N, 6) -> (N, V, 2) px."""
    mats = np.stack([ref_matrix @ pose_matrix(p) for p in np.atleast_2d(poses)])
    return project_with_matrices(np.asarray(meshes, np.float64), mats, width, height)
