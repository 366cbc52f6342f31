"""Conformance of projection and pose-image drawing against a fixture folder (docs/aniportrait.md §7.5).

Everything (image sizes, which size variants exist) is read from the fixture's own files, so other
fixtures in the same layout are checked without changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facecast.models.aniportrait.conformance.stage_result import StageResult
from facecast.models.face.pose_image import draw_pose_canvas, draw_pose_image, draw_pose_images
from facecast.models.face.projection import perspective_matrix, project_points, project_with_matrices

PROJECTION_TOL_PX = 1e-9  # float64 arithmetic in a different order: ~1e-13 px expected
MATRIX_TOL = 1e-6
PIXEL_TOL = 0  # pose images must be equal pixel for pixel

LANDMARK_FIXTURE = "landmarks/landmark_fixture.npz"
INPUT_LANDMARKS = "inputs/landmarks.npz"
INPUT_POSE_IMAGES = "inputs/pose_images.npz"


class FixtureError(FileNotFoundError):
    """A fixture folder lacks a file or an array the check needs (the message names it)."""


class FixtureArchive:
    """An .npz of a fixture folder whose missing keys raise FixtureError naming file and key."""

    def __init__(self, fixture_dir: Path, relative: str) -> None:
        self.path = fixture_dir / relative
        if not self.path.is_file():
            raise FixtureError(f"fixture file {self.path} is missing")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self._arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # truncated or not an npz
            raise FixtureError(f"cannot read fixture file {self.path}: {exc}") from exc

    def keys(self) -> list[str]:
        return list(self._arrays)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            raise FixtureError(f"fixture file {self.path} has no array '{key}'")
        return self._arrays[key]


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if a.size else 0.0


def _differing_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Number of (y, x) positions whose colour differs; a shape mismatch counts every pixel."""
    if a.shape != b.shape:
        return int(max(a.size, b.size) // 3)
    return int(np.any(a != b, axis=-1).sum())


def _size_tags(fixture: FixtureArchive) -> list[str]:
    """Size variants of the fixture (e.g. sq512, portrait_W256_H384), those with a projected-points array."""
    return sorted(
        k.removesuffix("__image_shape_hw")
        for k in fixture.keys()
        if k.endswith("__image_shape_hw")
        and f"{k.removesuffix('__image_shape_hw')}__pose_images" in fixture.keys()
    )


def _check_size_variant(fx: FixtureArchive, tag: str) -> list[StageResult]:
    height, width = (int(v) for v in fx[f"{tag}__image_shape_hw"])
    results = [
        StageResult(
            "projection",
            f"{tag} perspective matrix",
            max_abs_error(perspective_matrix(width / height), fx[f"{tag}__perspective_matrix_4x4_as_used"]),
            MATRIX_TOL,
        )
    ]
    expected_pts = fx[f"{tag}__projected_points"]
    points = project_points(fx["mesh"], fx["ref_trans_mat"], fx["pose_vectors"], width, height)
    results.append(
        StageResult(
            "projection",
            f"{tag} projected points (px)",
            max_abs_error(points, expected_pts),
            PROJECTION_TOL_PX,
        )
    )
    # Drawing is checked from the fixture's own points so a projection error cannot hide a drawing one.
    canvases = np.stack([draw_pose_canvas(p, width, height, normalized=False) for p in expected_pts])
    images = draw_pose_images(expected_pts, width, height, normalized=False)
    results.append(
        StageResult(
            "pose_images", f"{tag} 512 canvas (px differing)",
            _differing_pixels(canvases, fx[f"{tag}__canvas512"]), PIXEL_TOL,
        )
    )  # fmt: skip
    results.append(
        StageResult(
            "pose_images", f"{tag} pose images (px differing)",
            _differing_pixels(images, fx[f"{tag}__pose_images"]), PIXEL_TOL,
        )
    )  # fmt: skip
    return results


def _check_refpose(fx: FixtureArchive) -> list[StageResult]:
    results = []
    lmks = fx["ref_lmks_478_f32"]
    for key in sorted(k for k in fx.keys() if k.startswith("refpose_") and k.endswith("__image")):
        tag = key.removesuffix("__image")
        expected = fx[key]
        height, width = expected.shape[:2]
        image = draw_pose_image(lmks, width, height, normalized=True)
        results.append(
            StageResult("pose_images", f"{tag} (px differing)", _differing_pixels(image, expected), PIXEL_TOL)
        )
    return results


def _check_inputs(fixture_dir: Path) -> list[StageResult]:
    """The pipeline inputs: landmark sequence → projected points → pose_images.npz (and ref_pose)."""
    lm = FixtureArchive(fixture_dir, INPUT_LANDMARKS)
    poses = FixtureArchive(fixture_dir, INPUT_POSE_IMAGES)
    expected_images = poses["pose_images"]
    _, height, width, _ = expected_images.shape
    expected_pts = lm["projected_points"]
    points = project_points(lm["mesh_seq"], lm["ref_trans_mat"], lm["pose_seq"], width, height)
    images = draw_pose_images(expected_pts, width, height, normalized=False)
    ref_pose = poses["ref_pose"]
    ref_image = draw_pose_image(lm["ref_lmks_478_f32"], ref_pose.shape[1], ref_pose.shape[0], normalized=True)
    return [
        StageResult("projection", "inputs projected points (px)", max_abs_error(points, expected_pts), PROJECTION_TOL_PX),
        StageResult(
            "pose_images", "inputs pose images (px differing)",
            _differing_pixels(images, expected_images), PIXEL_TOL,
        ),
        StageResult("pose_images", "inputs ref_pose (px differing)", _differing_pixels(ref_image, ref_pose), PIXEL_TOL),
    ]  # fmt: skip


def check_landmarks(fixture_dir: Path) -> list[StageResult]:
    """Projection and pose-image stages of a fixture folder; raises FixtureError if a file is missing."""
    fx = FixtureArchive(fixture_dir, LANDMARK_FIXTURE)
    results: list[StageResult] = []
    tags = _size_tags(fx)
    if not tags:
        raise FixtureError(
            f"fixture file {fx.path} holds no '<size>__image_shape_hw' / '<size>__pose_images' arrays"
        )
    for tag in tags:
        results.extend(_check_size_variant(fx, tag))
    if "with_trans__matrices" in fx.keys():
        height, width = (int(v) for v in fx["with_trans__image_shape_hw"])
        points = project_with_matrices(fx["mesh"], fx["with_trans__matrices"], width, height)
        results.append(
            StageResult(
                "projection", "with_trans projected points (px)",
                max_abs_error(points, fx["with_trans__projected_points"]), PROJECTION_TOL_PX,
            )
        )  # fmt: skip
    results.extend(_check_refpose(fx))
    results.extend(_check_inputs(fixture_dir))
    return results
