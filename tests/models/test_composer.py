from __future__ import annotations

import numpy as np

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.face.rig import FaceRig
from facecast.models.motion.composer import MotionComposer
from facecast.models.motion.pose_template import ping_pong_index


def _run(composer: MotionComposer, n: int, speech: float = 0.0) -> list[MotionFrame]:
    return [composer.compose(MotionFrame(k, np.zeros((468, 3), np.float32), speech=speech)) for k in range(n)]


def _blink_starts(frames: list[MotionFrame]) -> list[int]:
    b = np.array([f.blink for f in frames])
    return [k for k in range(1, len(b)) if b[k] > 0 and b[k - 1] == 0]


def test_blinks_are_natural_and_seeded(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    frames = _run(MotionComposer(rig, 30, seed=1), 30 * 60)
    starts = _blink_starts(frames)
    gaps = np.diff(starts) / 30
    assert 8 <= len(starts) <= 40  # a blink every 1.5-7 s on average
    assert gaps.min() >= 1.2 and gaps.max() < 15
    assert max(f.blink for f in frames) == 1.0
    closed = next(f for f in frames if f.blink == 1.0)
    assert closed.mesh_offsets[386, 1] < -0.3  # upper lid came down
    assert _blink_starts(_run(MotionComposer(rig, 30, seed=1), 30 * 60)) == starts
    assert _blink_starts(_run(MotionComposer(rig, 30, seed=2), 30 * 60)) != starts


def test_idle_sway_and_head_motion_off(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    poses = np.array([f.pose for f in _run(MotionComposer(rig, 30), 30 * 20)])
    assert 0.5 < np.abs(poses[:, 1]).max() < 5.0  # yaw sways by a few degrees
    assert np.abs(np.diff(poses[:, :3], axis=0)).max() < 0.3  # slowly
    still = np.array([f.pose for f in _run(MotionComposer(rig, 30, head_motion=False), 100)])
    assert not still.any()


def test_pose_template_ping_pong(grace: Avatar) -> None:
    template = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert [ping_pong_index(i, 3) for i in range(8)] == [0, 1, 2, 1, 0, 1, 2, 1]
    frames = _run(MotionComposer(FaceRig(grace.mesh), 30, pose_template=template), 5)
    assert [int(f.pose[0]) for f in frames] == [0, 6, 0, 6, 0]
