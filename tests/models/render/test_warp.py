from __future__ import annotations

import numpy as np

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.face import topology as T
from facecast.models.face.rig import Expression, FaceRig
from facecast.models.render.warp import WarpRenderer


def _frame(offsets: np.ndarray, pose: np.ndarray | None = None) -> MotionFrame:
    return MotionFrame(0, offsets.astype(np.float32), pose=np.zeros(6, np.float32) if pose is None else pose)


def _head_mask(avatar: Avatar, renderer: WarpRenderer, scale: float = 2.2) -> np.ndarray:
    """True inside the (generously enlarged) head and below it (shoulders)."""
    import cv2

    oval = renderer.landmarks[T.FACE_OVAL]
    c = oval.mean(0)
    mask = np.zeros((renderer.size, renderer.size), np.uint8)
    cv2.fillPoly(mask, [np.round(c + scale * (oval - c)).astype(np.int32)], 1)
    mask[int(renderer.landmarks[152, 1]) :, :] = 1
    return mask.astype(bool)


def test_no_motion_is_the_portrait(grace: Avatar) -> None:
    r = WarpRenderer(grace)
    out = r.render(_frame(np.zeros((468, 3))))
    assert np.abs(out.astype(int) - grace.image.astype(int)).max() <= 1


def test_open_mouth_shows_a_dark_cavity_and_background_stays(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    r = WarpRenderer(grace)
    out = r.render(_frame(rig.offsets(Expression(jaw=1.2))))
    lm = r.landmarks
    mouth = out[int(lm[13, 1]) + 2 : int(lm[14, 1]) + 12, int(lm[78, 0]) + 8 : int(lm[308, 0]) - 8]
    rest = grace.image[int(lm[13, 1]) + 2 : int(lm[14, 1]) + 12, int(lm[78, 0]) + 8 : int(lm[308, 0]) - 8]
    assert mouth.mean() < rest.mean() - 20
    background = ~_head_mask(grace, r)
    diff = np.abs(out.astype(float) - grace.image.astype(float)).mean(-1)
    assert diff[background].mean() < 2.0


def test_blink_closes_the_eyes(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    r = WarpRenderer(grace)
    out = r.render(_frame(rig.offsets(Expression(), blink=1.0)))
    lm = r.landmarks
    y0, y1 = int(lm[159, 1]), int(lm[145, 1]) + 1
    eye_before = grace.image[y0:y1, int(lm[33, 0]) : int(lm[133, 0])].astype(float)
    eye_after = out[y0:y1, int(lm[33, 0]) : int(lm[133, 0])].astype(float)
    assert np.abs(eye_after - eye_before).mean() > 8  # the eye region changed to lid skin


def test_head_motion_never_tears_the_border(grace: Avatar) -> None:
    r = WarpRenderer(grace, size=256)
    out = r.render(_frame(np.zeros((468, 3)), pose=np.array([6, 12, -5, 0.8, -0.5, 0], np.float32)))
    assert out.shape == (256, 256, 3)
    diff = np.abs(out.astype(float) - r.image.astype(float)).mean(-1)
    edges = np.concatenate([diff[:, :4].ravel(), diff[:, -4:].ravel(), diff[-4:, :].ravel()])
    assert edges.mean() < 3  # the frame's edges (background, shoulders) stay put
    assert diff.mean() > 1  # while the head did move
    assert (out.reshape(-1, 3).max(1) > 0).all()  # no black holes
