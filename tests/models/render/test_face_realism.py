"""What a viewer sees of the warp renderer's face: lids that cover the eye, lips that close over a smile's
teeth, a dark mouth interior with teeth that move with the skull and the jaw.

Measured on the rendered pixels against the renderer's own geometry (no tracker here: `facecast bench
realism` measures the same things with an independent face tracker on rendered video)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.face import topology as T
from facecast.models.face.rig import SHAPES, Expression, FaceRig
from facecast.models.render.warp import WarpRenderer


def _render(r: WarpRenderer, expr: Expression, blink: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    pose = np.array([0, yaw, 0, 0, 0, 0], np.float32)
    return r.render(MotionFrame(0, r.rig.offsets(expr, blink), pose=pose, blink=blink))


def _mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(polygon).astype(np.int32)], (1,))
    return m.astype(bool)


def _teeth_like(rgb: np.ndarray) -> np.ndarray:
    """Very bright and nearly grey (pale lips reach V 220, but stay pinker)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    return (hsv[..., 2] > 225) & (hsv[..., 1] < 40)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_a_blink_covers_the_whole_eye(astronaut: Avatar) -> None:
    """On a face without glasses (behind Grace's, reflections and the frame make the spread meaningless)."""
    r = WarpRenderer(astronaut)
    opened, closed = _render(r, Expression()), _render(r, Expression(), blink=1.0)
    lm = r.landmarks
    eye = _mask(opened.shape, lm[T.RIGHT_EYE_UPPER + T.RIGHT_EYE_LOWER[::-1]])
    eye &= cv2.erode(eye.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # Open: a dark iris and bright whites inside the contour; closed: one even skin, no iris left.
    spread_open = np.percentile(_luma(opened)[eye], 95) - np.percentile(_luma(opened)[eye], 5)
    spread_closed = np.percentile(_luma(closed)[eye], 95) - np.percentile(_luma(closed)[eye], 5)
    assert spread_closed < 0.5 * spread_open
    skin = np.median(_luma(closed)[eye])
    assert (_luma(closed)[eye] < 0.6 * skin).mean() < 0.02  # no iris or pupil pixel remains


def test_half_closed_lids_sit_halfway(grace: Avatar) -> None:
    r = WarpRenderer(grace)
    opened, half, closed = (_render(r, Expression(), blink=b) for b in (0.0, 0.5, 1.0))
    eye = _mask(opened.shape, r.landmarks[T.LEFT_EYE_UPPER + T.LEFT_EYE_LOWER[::-1]])
    d_half = np.abs(half.astype(float) - opened)[eye].mean()
    d_closed = np.abs(closed.astype(float) - opened)[eye].mean()
    assert 0.2 * d_closed < d_half < 0.9 * d_closed


def test_a_toothy_smile_rests_with_closed_lips(astronaut: Avatar) -> None:
    """The photo shows teeth; at rest and on a bilabial the lips cover them, with no white strip."""
    r = WarpRenderer(astronaut)
    lm = r.landmarks
    photo_mouth = _mask(astronaut.image.shape, lm[T.INNER_LIP_RING])
    shown = _teeth_like(astronaut.image)[photo_mouth].mean()
    assert shown > 0.2  # the photo does show its teeth
    lips = _mask(astronaut.image.shape, lm[T.OUTER_LIP_RING])
    for shape in ("rest", "closure"):
        out = _render(r, SHAPES[shape])
        # What is left is the lower lip's glossy highlight, a few pixels (a squashed row of teeth: 0.3).
        assert _teeth_like(out)[lips].mean() < 0.2 * shown, shape


@pytest.mark.parametrize("portrait", ["grace", "astronaut"])
def test_an_open_vowel_shows_a_dark_interior_with_teeth(
    portrait: str, request: pytest.FixtureRequest
) -> None:
    avatar: Avatar = request.getfixturevalue(portrait)
    r = WarpRenderer(avatar)
    out = _render(r, SHAPES["open vowel"])
    solved = r.solve(MotionFrame(0, r.rig.offsets(SHAPES["open vowel"])))
    driven = r.landmarks + solved.disp[:468]
    mouth = _mask(out.shape, driven[T.INNER_LIP_RING])
    mouth &= cv2.erode(mouth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    cheeks = np.zeros(out.shape[:2], bool)
    for i in (50, 280):
        x, y = np.round(r.landmarks[i]).astype(int)
        cheeks[y - 5 : y + 5, x - 5 : x + 5] = True
    assert np.mean(_luma(out)[mouth]) < 0.6 * np.mean(_luma(out)[cheeks])
    assert (_luma(out)[mouth] > np.mean(_luma(out)[cheeks])).mean() > 0.01  # some teeth show
    assert (_luma(out)[mouth] < 0.25 * np.mean(_luma(out)[cheeks])).mean() > 0.2  # and a dark cavity


def test_upper_teeth_follow_the_skull_and_lower_teeth_the_jaw(grace: Avatar) -> None:
    r = WarpRenderer(grace)
    rest = r.solve(
        MotionFrame(0, r.rig.offsets(Expression()), pose=np.array([0, 12, 0, 0, 0, 0], np.float32))
    )
    assert np.abs(rest.jaw_shift).max() < 0.5  # turning the head does not move the jaw
    assert abs(rest.skull[0, 2]) > 2  # but moves the skull (and the upper teeth with it)
    opened = r.solve(MotionFrame(0, r.rig.offsets(Expression(jaw=1.0))))
    assert opened.jaw_shift[1] > 8  # the jaw carries the lower teeth down
    assert np.allclose(opened.skull, [[1, 0, 0], [0, 1, 0]])  # the skull stays


def test_shapes_are_distinct(grace: Avatar) -> None:
    """Rounded, spread, F/V and closure each look different from rest and from each other at the mouth."""
    r = WarpRenderer(grace)
    lm = r.landmarks
    x0, y0 = np.floor(lm[T.OUTER_LIP_RING].min(0)).astype(int) - 6
    x1, y1 = np.ceil(lm[T.OUTER_LIP_RING].max(0)).astype(int) + 6
    crops = {name: _render(r, e)[y0:y1, x0:x1].astype(float) for name, e in SHAPES.items()}
    names = list(crops)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if {a, b} == {"rest", "closure"}:
                continue  # closure is rest pressed a little: close by design
            assert np.abs(crops[a] - crops[b]).mean() > 2.0, (a, b)


def test_rig_shapes_use_their_bases(grace: Avatar) -> None:
    rig = FaceRig(grace.mesh)
    fv = rig.offsets(SHAPES["F/V"]) - rig.offsets(Expression())
    assert fv[T.UPPER_LIP, 1].mean() > 0.1 and fv[T.LOWER_LIP, 2].mean() < -0.1  # lip lifts, lower lip tucks
    # The blink's two parts: the upper lid comes down (the warp renderer paints it instead), the lower
    # lid rises a little (warped), and neither moves the other.
    assert rig.blink_upper[386, 1] < -0.3 and not rig.blink_upper[374].any()
    assert 0 < rig.blink_lower[374, 1] < 0.5 * -rig.blink_upper[386, 1] and not rig.blink_lower[386].any()
