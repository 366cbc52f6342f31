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
    """Frames where the lids pass half-closed going down (a relaxed droop stays far below that)."""
    b = np.array([f.blink for f in frames])
    return [k for k in range(1, len(b)) if b[k] >= 0.5 > b[k - 1]]


def test_blinks_are_natural_and_seeded(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    frames = _run(MotionComposer(rig, 30, seed=1), 30 * 120)
    starts = _blink_starts(frames)
    gaps = np.diff(starts) / 30
    assert 16 <= len(starts) <= 60  # 8-30 a minute
    doubles = gaps[gaps < 0.6]
    assert 0 < len(doubles) < 0.4 * len(gaps)  # some blinks come in pairs, most alone
    assert gaps[gaps >= 0.6].min() >= 1.2 and gaps.max() < 15
    assert max(f.blink for f in frames) == 1.0
    closed = next(f for f in frames if f.blink == 1.0)
    assert closed.mesh_offsets[386, 1] < -0.3  # upper lid came down
    assert _blink_starts(_run(MotionComposer(rig, 30, seed=1), 30 * 120)) == starts
    assert _blink_starts(_run(MotionComposer(rig, 30, seed=2), 30 * 120)) != starts


def test_a_blink_closes_in_100_ms_and_reopens_slower(grace: Avatar) -> None:
    frames = _run(MotionComposer(FaceRig(grace.mesh), 30, seed=3, head_motion=False), 30 * 30, speech=0.8)
    b = np.array([f.blink for f in frames])
    start = _blink_starts(frames)[0]
    onset = start - int(np.argmax(b[start::-1] <= 0.0))  # last open frame before it
    closed = onset + int(np.argmax(b[onset:] >= 1.0))
    reopened = closed + int(np.argmax(b[closed:] <= 0.0))
    assert 2 <= closed - onset <= 4  # about 100 ms at 30 fps
    assert (reopened - closed) > (closed - onset)  # reopening is the slower half


def test_blinks_gather_at_phrase_ends(grace: Avatar) -> None:
    """Speech in 2.5 s phrases with 1.5 s pauses: blinks start just after a phrase far more than by chance."""
    composer = MotionComposer(FaceRig(grace.mesh), 30, seed=4, head_motion=False)
    period, spoken = 120, 75  # frames
    frames = [
        composer.compose(
            MotionFrame(k, np.zeros((468, 3), np.float32), speech=0.8 if k % period < spoken else 0.0)
        )
        for k in range(30 * 120)
    ]
    starts = np.array(_blink_starts(frames))
    after_end = ((starts % period) >= spoken) & ((starts % period) < spoken + 15)  # within 0.5 s of an end
    assert after_end.mean() > 0.4  # 0.5 s windows are 12.5 % of the time


def test_lids_relax_in_silence_and_lower_with_the_head(grace: Avatar) -> None:
    frames = _run(MotionComposer(FaceRig(grace.mesh), 30, seed=5, head_motion=False), 30 * 10)
    late = np.array([f.blink for f in frames[-60:]])
    assert 0.08 < np.median(late) < 0.2  # relaxed, not closed
    talking = _run(MotionComposer(FaceRig(grace.mesh), 30, seed=5, head_motion=False), 30 * 10, speech=0.8)
    assert np.median([f.blink for f in talking[-60:]]) == 0.0  # wide awake while speaking


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
