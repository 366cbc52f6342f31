"""Portraits that cannot be animated are refused: closed eyes, a wide-open mouth; real portraits pass.

The refused photos are made here from the shared portraits (no stored binaries): a wide-open mouth and
a blink rendered by the warp engine, and closed eyes painted over, which does not depend on the renderer.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facecast.frames import MotionFrame
from facecast.models.avatar import Avatar, AvatarError, prepare_avatar
from facecast.models.face import portrait_checks as pc
from facecast.models.face.landmarks import detect_faces
from facecast.models.face.rig import Expression
from facecast.models.render.engine import WarpEngine

EYES_CLOSED = "the eyes are closed in the photo; use a portrait with open eyes"
MOUTH_OPEN = "the mouth is wide open in the photo; use a portrait with a closed mouth or a smile"

# Eye outlines (corner, lower lid, corner, upper lid) of the subject's right and left eye.
RIGHT_EYE_OUTLINE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE_OUTLINE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _measures(avatar: Avatar) -> tuple[float, float]:
    points = pc.to_pixels(avatar.landmarks, avatar.size, avatar.size)
    return float(np.mean(pc.eye_aspect_ratios(points))), pc.mouth_opening(points)


def _render(avatar: Avatar, expression: Expression, blink: float) -> np.ndarray:
    engine = WarpEngine(avatar, head_motion=False)
    offsets = engine.rig.offsets(expression, blink=blink)
    return engine.renderer.render(MotionFrame(index=0, mesh_offsets=offsets, blink=blink))


def _paint_eyes_shut(image: np.ndarray) -> np.ndarray:
    """Each eye covered with the skin just above it, and a dark lash line along its lower lid."""
    h, w = image.shape[:2]
    points = pc.to_pixels(detect_faces(image, max_faces=1)[0], w, h)
    out = image.astype(np.float32)
    for outline in (RIGHT_EYE_OUTLINE, LEFT_EYE_OUTLINE):
        eye = points[outline]
        width = float(np.linalg.norm(eye[0] - eye[8]))
        centre = eye.mean(axis=0)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [(centre + (eye - centre) * 1.2).round().astype(np.int32)], 255)
        soft = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * width)).astype(np.float32)[..., None] / 255
        top = eye[:, 1].min()
        band = image[
            int(top - 0.45 * width) : int(top - 0.2 * width), int(eye[:, 0].min()) : int(eye[:, 0].max())
        ]
        skin = np.median(band.reshape(-1, 3), axis=0)
        out = out * (1 - soft) + skin * soft
    out_u8 = out.astype(np.uint8)
    for outline in (RIGHT_EYE_OUTLINE, LEFT_EYE_OUTLINE):
        lash = points[outline[:9]].round().astype(np.int32)
        width = float(np.linalg.norm(points[outline[0]] - points[outline[8]]))
        cv2.polylines(out_u8, [lash], False, (40, 30, 30), max(1, round(0.06 * width)), cv2.LINE_AA)
    return out_u8


def test_eye_aspect_ratio_and_mouth_opening_of_a_drawn_face() -> None:
    """Pixel distances in a 200 x 100 image: x scales by the width, y by the height."""
    lmk = np.zeros((478, 3), np.float32)
    for (a, b), pairs, x0 in ((pc.RIGHT_EYE[0], pc.RIGHT_EYE[1], 60), (pc.LEFT_EYE[0], pc.LEFT_EYE[1], 120)):
        lmk[a, :2], lmk[b, :2] = (x0 / 200, 0.4), ((x0 + 20) / 200, 0.4)  # 20 px wide
        for up, down in pairs:
            lmk[up, :2], lmk[down, :2] = (x0 / 200, 0.37), (x0 / 200, 0.43)  # 6 px apart
    for up, down in pc.INNER_LIP_PAIRS:
        lmk[up, :2], lmk[down, :2] = (0.5, 0.7), (0.5, 0.75)  # 5 px apart
    points = pc.to_pixels(lmk, 200, 100)
    assert pc.eye_aspect_ratios(points) == pytest.approx((0.3, 0.3))
    eye_span = np.linalg.norm(points[33] - points[263])  # 60 -> 140 px
    assert pc.mouth_opening(points) == pytest.approx(5 / eye_span)
    assert not pc.eyes_closed(points) and not pc.mouth_wide_open(points)
    # The benchmarks measure rendered video with the same formula.


@pytest.mark.parametrize("photo", ["astronaut.png", "astronaut_512.png", "grace_hopper_512.png"])
def test_shared_portraits_are_accepted(media_dir: Path, photo: str) -> None:
    avatar = prepare_avatar((media_dir / photo).read_bytes())
    ear, mouth = _measures(avatar)
    assert ear > pc.MIN_EYE_ASPECT_RATIO * 1.25, ear  # open: 0.267 (Grace) and up
    assert mouth < pc.MAX_MOUTH_OPENING / 1.4, mouth  # the astronaut's toothy smile: 0.11


def test_a_wide_open_mouth_is_refused(grace: Avatar) -> None:
    photo = _render(grace, Expression(jaw=2.0), blink=0.0)
    points = pc.to_pixels(detect_faces(photo)[0], *photo.shape[1::-1])
    assert pc.mouth_opening(points) > pc.MAX_MOUTH_OPENING * 1.15
    with pytest.raises(AvatarError) as info:
        prepare_avatar(_png(photo))
    assert str(info.value) == MOUTH_OPEN


@pytest.mark.parametrize("photo", ["astronaut_512.png", "astronaut.png"])
def test_closed_eyes_are_refused(media_dir: Path, photo: str) -> None:
    shut = _paint_eyes_shut(_rgb(media_dir / photo))
    points = pc.to_pixels(detect_faces(shut)[0], *shut.shape[1::-1])
    assert np.mean(pc.eye_aspect_ratios(points)) < pc.MIN_EYE_ASPECT_RATIO / 1.5
    with pytest.raises(AvatarError) as info:
        prepare_avatar(_png(shut))
    assert str(info.value) == EYES_CLOSED


def test_a_rendered_blink_is_refused(grace: Avatar) -> None:
    """Needs lids that close fully (models/render/eyelids.py): a blink that leaves a slit reads as open."""
    with pytest.raises(AvatarError) as info:
        prepare_avatar(_png(_render(grace, Expression(), blink=1.0)))
    assert str(info.value) == EYES_CLOSED
