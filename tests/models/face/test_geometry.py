from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.models.face.geometry import canonical_face, fit_face_geometry, weighted_procrustes
from facecast.models.face.landmarks import detect_faces
from facecast.models.face.projection import pose_matrix, project_points


def test_procrustes_recovers_a_known_transform() -> None:
    canon = canonical_face()
    true = pose_matrix(np.array([8.0, -15.0, 4.0, 1.5, -2.0, -38.0]))
    true[:3, :3] *= 1.07
    moved = canon.vertices @ true[:3, :3].T + true[:3, 3]
    fitted = weighted_procrustes(canon.vertices[canon.basis_ids], moved[canon.basis_ids], canon.basis_weights)
    np.testing.assert_allclose(fitted, true, atol=1e-9)


def test_fit_matches_mediapipe_face_geometry(fixture_a: Path) -> None:
    """The fixture holds MediaPipe's own metric mesh and matrix for its landmarks (FaceLandmarker v2)."""
    d = np.load(fixture_a / "inputs" / "landmarks.npz")
    mesh, matrix = fit_face_geometry(d["ref_lmks_478"], 128, 128)
    np.testing.assert_allclose(mesh, d["ref_lmks3d_468"], atol=1e-4)
    np.testing.assert_allclose(matrix, d["ref_trans_mat"], atol=1e-3)


@pytest.mark.parametrize("photo", ["grace_hopper_512.png", "astronaut_512.png", "astronaut.png"])
def test_reprojected_mesh_lands_on_detected_landmarks(media_dir: Path, photo: str) -> None:
    image = np.asarray(Image.open(media_dir / photo).convert("RGB"))
    h, w = image.shape[:2]
    (landmarks,) = detect_faces(image)
    mesh, matrix = fit_face_geometry(landmarks, w, h)
    projected = project_points(mesh[None], matrix, np.zeros((1, 6)), w, h)[0]
    err = np.linalg.norm(projected - landmarks[:468, :2] * [w, h], axis=1)
    assert err.max() < 2.0, f"max reprojection error {err.max():.2f} px"
    assert 0.9 < np.linalg.norm(matrix[:3, 0]) < 1.1  # metric scale: a face is face-sized
    assert 10 < mesh[:, 1].max() - mesh[:, 1].min() < 25  # forehead to chin in cm
