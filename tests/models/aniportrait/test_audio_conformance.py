"""check_audio on fixture A, and on a fixture folder with a missing file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facecast.models.aniportrait.conformance.audio import check_audio
from facecast.models.aniportrait.conformance.landmarks import FixtureError


def test_fixture_a_passes_every_audio_stage(fixture_a: Path) -> None:
    results = check_audio(fixture_a)
    names = [r.name for r in results]
    for stage in ("input_values", "a2m conv features", "a2m interpolated features", "a2m projected features",
                  "a2m last hidden state", "a2m output", "a2p output raw", "a2p rotation halved",
                  "a2p smoothed", "projected points (px)"):  # fmt: skip
        assert stage in names
    failed = [r for r in results if not r.passed]
    assert not failed, failed
    assert all(r.tolerance <= 1e-4 for r in results)
    assert max(r.max_abs_error for r in results) < 1e-5


def test_missing_audio_file_is_named(fixture_a: Path, tmp_path: Path) -> None:
    shutil.copytree(fixture_a / "configs", tmp_path / "configs")
    with pytest.raises(FixtureError, match=r"audio_fixture\.npz"):
        check_audio(tmp_path)
    (tmp_path / "audio").mkdir()
    shutil.copy(fixture_a / "audio" / "audio_fixture.npz", tmp_path / "audio")
    with pytest.raises(FixtureError, match=r"landmarks\.npz"):
        check_audio(tmp_path)
