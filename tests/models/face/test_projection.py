from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.models.face.projection import perspective_matrix, project_points, project_with_matrices


@pytest.mark.parametrize(
    ("prefix", "width", "height"), [("sq512", 512, 512), ("portrait_W256_H384", 256, 384)]
)
def test_projection_matches_aniportrait(fixture_a: Path, prefix: str, width: int, height: int) -> None:
    f = np.load(fixture_a / "landmarks" / "landmark_fixture.npz")
    np.testing.assert_array_equal(
        perspective_matrix(width / height), f[f"{prefix}__perspective_matrix_4x4_as_used"]
    )
    pts = project_points(f["mesh"], f["ref_trans_mat"], f["pose_vectors"], width, height)
    np.testing.assert_allclose(pts, f[f"{prefix}__projected_points"], atol=1e-9)


def test_projection_with_matrices(fixture_a: Path) -> None:
    f = np.load(fixture_a / "landmarks" / "landmark_fixture.npz")
    pts = project_with_matrices(f["mesh"], f["with_trans__matrices"], 512, 512)
    np.testing.assert_allclose(pts, f["with_trans__projected_points"], atol=1e-9)
