"""Pose-image drawing against fixture A (docs/aniportrait.md §7.5): edge list, colours, pixel-exact images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facecast.models.face.pose_image import (
    CANVAS_SIZE,
    POSE_EDGES,
    draw_pose_canvas,
    draw_pose_image,
    draw_pose_images,
)


@pytest.fixture(scope="module")
def landmark_fixture(fixture_a: Path) -> dict[str, np.ndarray]:
    with np.load(fixture_a / "landmarks" / "landmark_fixture.npz") as data:
        return {k: data[k] for k in data.files}


def test_edges_and_colours_match_draw_spec(fixture_a: Path) -> None:
    spec = json.loads((fixture_a / "landmarks" / "draw_spec.json").read_text())
    expected = [(e["i"], e["j"], tuple(e["color"])) for e in spec["edges_in_draw_order"]]
    assert len(POSE_EDGES) == spec["n_edges"] == 114
    assert list(POSE_EDGES) == expected
    assert {e["thickness"] for e in spec["edges_in_draw_order"]} == {2}
    assert spec["canvas_wh"] == [CANVAS_SIZE, CANVAS_SIZE]


def test_edges_match_installed_mediapipe_sets() -> None:
    connections = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    edges = [(i, j) for i, j, _ in POSE_EDGES]
    assert edges[26:42] == list(connections.FACEMESH_LEFT_EYE)
    assert edges[66:74] == list(connections.FACEMESH_RIGHT_EYEBROW)


@pytest.mark.parametrize("tag", ["sq512", "portrait_W256_H384", "set_size"])
def test_projected_meshes_draw_pixel_exact(landmark_fixture: dict[str, np.ndarray], tag: str) -> None:
    height, width = (int(v) for v in landmark_fixture[f"{tag}__image_shape_hw"])
    points = landmark_fixture[f"{tag}__projected_points"]
    for k in range(points.shape[0]):
        canvas = draw_pose_canvas(points[k], width, height, normalized=False)
        assert np.array_equal(canvas, landmark_fixture[f"{tag}__canvas512"][k]), (tag, k)
    images = draw_pose_images(points, width, height, normalized=False)
    assert images.shape == (points.shape[0], height, width, 3) and images.dtype == np.uint8
    assert np.array_equal(images, landmark_fixture[f"{tag}__pose_images"])


def test_extreme_pose_drops_points_outside_the_frame(landmark_fixture: dict[str, np.ndarray]) -> None:
    # Frame 3 leaves the frame: some landmarks fall outside [0, 1] and their edges vanish.
    points = landmark_fixture["sq512__projected_points"][3]
    outside = (points < 0).any(-1) | (points > 512).any(-1)
    assert outside.any()
    edge_pts = {i for i, j, _ in POSE_EDGES} | {j for _, j, _ in POSE_EDGES}
    assert outside[sorted(edge_pts)].any(), "the extreme frame should drop drawn edges"
    image = draw_pose_image(points, 512, 512, normalized=False)
    assert np.array_equal(image, landmark_fixture["sq512__pose_images"][3])


@pytest.mark.parametrize("tag", ["refpose_sq512", "refpose_set_size"])
def test_reference_pose_from_normalised_landmarks(landmark_fixture: dict[str, np.ndarray], tag: str) -> None:
    expected = landmark_fixture[f"{tag}__image"]
    height, width = expected.shape[:2]
    lmks = landmark_fixture["ref_lmks_478_f32"]
    assert np.array_equal(
        draw_pose_canvas(lmks, width, height, normalized=True), landmark_fixture[f"{tag}__canvas512"]
    )
    assert np.array_equal(draw_pose_image(lmks, width, height, normalized=True), expected)


def test_colours_are_literal_channel_values() -> None:
    # A horizontal line between two face-oval points gets exactly (10, 200, 10) in channels 0, 1, 2.
    points = np.full((468, 2), -1.0)
    points[176] = (0.25, 0.5)
    points[149] = (0.75, 0.5)
    canvas = draw_pose_canvas(points, 512, 512, normalized=True)
    assert tuple(canvas[256, 256]) == (10, 200, 10)
    assert np.array_equal(np.unique(canvas.reshape(-1, 3), axis=0), [[0, 0, 0], [10, 200, 10]])


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="468"):
        draw_pose_image(np.zeros((10, 2)), 64, 64, normalized=True)
    with pytest.raises(ValueError, match="positive"):
        draw_pose_image(np.zeros((468, 2)), 0, 64, normalized=True)
