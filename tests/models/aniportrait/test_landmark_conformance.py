"""check_landmarks on fixture A, and on a fixture folder with a missing file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facecast.models.aniportrait.conformance.landmarks import FixtureError, check_landmarks


def test_fixture_a_passes_every_stage(fixture_a: Path) -> None:
    results = check_landmarks(fixture_a)
    names = {r.name for r in results}
    assert {"sq512 projected points (px)", "portrait_W256_H384 pose images (px differing)",
            "refpose_sq512 (px differing)", "inputs pose images (px differing)"} <= names  # fmt: skip
    failed = [r for r in results if not r.passed]
    assert not failed, failed
    for r in results:
        if r.stage == "pose_images":
            assert r.max_abs_error == 0 and r.tolerance == 0
        else:
            assert r.max_abs_error < 1e-9


def test_missing_file_is_named(fixture_a: Path, tmp_path: Path) -> None:
    (tmp_path / "landmarks").mkdir()
    shutil.copy(fixture_a / "landmarks" / "landmark_fixture.npz", tmp_path / "landmarks")
    with pytest.raises(FixtureError, match=r"inputs/landmarks\.npz"):
        check_landmarks(tmp_path)
    with pytest.raises(FixtureError, match=r"landmark_fixture\.npz"):
        check_landmarks(tmp_path / "nowhere")
