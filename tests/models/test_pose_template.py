"""Pose templates: ping-pong mirroring and tiling, file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.models.motion.pose_template import PoseTemplateError, load_pose_template, ping_pong_poses


def test_ping_pong_cycle_and_tiling() -> None:
    template = np.arange(4, dtype=np.float64)[:, None] * np.ones((1, 6))
    poses = ping_pong_poses(template, 15)
    assert poses.shape == (15, 6)
    assert poses[:, 0].tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert ping_pong_poses(template, 2)[:, 0].tolist() == [0, 1]


def test_fixture_pose_sequence_is_a_template_prefix(fixture_a: Path) -> None:
    with np.load(fixture_a / "inputs" / "landmarks.npz") as data:
        pose_seq = data["pose_seq"]
    np.testing.assert_array_equal(ping_pong_poses(pose_seq, 24), pose_seq)


def test_bad_templates(tmp_path: Path) -> None:
    with pytest.raises(PoseTemplateError, match="does not exist"):
        load_pose_template(tmp_path / "missing.npy")
    np.save(tmp_path / "bad.npy", np.zeros((5, 3)))
    with pytest.raises(PoseTemplateError, match=r"\(N, 6\)"):
        load_pose_template(tmp_path / "bad.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(PoseTemplateError, match="not a readable"):
        load_pose_template(tmp_path / "text.npy")
    np.save(tmp_path / "t.npy", np.ones((3, 6)))
    assert load_pose_template(tmp_path / "t.npy").shape == (3, 6)
