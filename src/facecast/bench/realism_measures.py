"""Pure measures of `facecast bench realism`: tracked landmarks (and the frame) in, one figure out.

Every function takes (>=468, 2) pixel landmarks from an independent tracker (mediapipe face mesh on
the decoded render, see mouth_track.MouthMeter), never the engine's own, so a renderer that moves its
mesh without moving the pixels is caught. Indices are mediapipe face-mesh vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facecast.models.face import topology as T
from facecast.models.face.portrait_checks import EYE_OUTER_CORNERS, eye_aspect_ratios

CHEEKS = (50, 280)

BLINK_CLOSED_FRACTION = 0.6  # EAR below this x the open level: the lids are closing
# A gap frame between two closed runs merges them only while the eye stays below this x open level:
# one noisy frame just over the closing threshold is one blink, a frame that really reopens makes two.
BLINK_REOPEN_FRACTION = 0.8
BLINK_MERGE_GAP = 1
CHEEK_RADIUS_FRACTION = 0.06  # of the outer-eye-corner span
CAVITY_TOP_FRACTION = 0.15
CAVITY_MIN_OPENING = 0.08
CAVITY_SHRINK = 0.85  # inner-lip polygon scaled about its centre, then eroded 1 px: lips stay out
SILENCE_DBFS = -45.0
SILENCE_MARGIN_S = 0.3
TEETH_BAND_FRACTION = 0.03  # half-height of the lip-line band, of the mouth width (at least 2 px)
TEETH_V_FRACTION = 0.75  # of the face's 95th-percentile HSV value
TEETH_MAX_S = 0.25


def _span(landmarks: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(landmarks[a] - landmarks[b]))


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean over both eyes of (mean facing-lid distance / corner distance); nan for a degenerate eye."""
    return float(np.mean(eye_aspect_ratios(landmarks)))


@dataclass(frozen=True)
class Blink:
    start: int  # first frame below the closing threshold
    end: int  # one past the last
    closed_ratio: float  # lowest EAR in the blink / the open level


def find_blinks(ear: np.ndarray, open_level: float | None = None) -> list[Blink]:
    """Blinks in a per-frame EAR series (nan = no face, never closed).

    open_level: the eye's open EAR; default the series' median (eyes are open most of the time).
    """
    ear = np.asarray(ear, np.float64)
    seen = ear[np.isfinite(ear)]
    if open_level is None:
        open_level = float(np.median(seen)) if seen.size else float("nan")
    if not math.isfinite(open_level) or open_level <= 0:
        return []
    closed = np.nan_to_num(ear, nan=np.inf) < BLINK_CLOSED_FRACTION * open_level
    runs: list[list[int]] = []
    start = None
    for k, c in enumerate([*closed.tolist(), False]):
        if c and start is None:
            start = k
        elif not c and start is not None:
            runs.append([start, k])
            start = None
    merged: list[list[int]] = []
    for run in runs:
        if merged:
            gap = ear[merged[-1][1] : run[0]]
            if gap.size <= BLINK_MERGE_GAP and not np.any(gap >= BLINK_REOPEN_FRACTION * open_level):
                merged[-1][1] = run[1]
                continue
        merged.append(run)
    return [Blink(a, b, float(np.nanmin(ear[a:b])) / open_level) for a, b in merged]


def open_eye_level(ear: np.ndarray) -> float:
    seen = np.asarray(ear, np.float64)
    seen = seen[np.isfinite(seen)]
    return float(np.median(seen)) if seen.size else float("nan")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec.601 luma (0..255 float32) of an (H, W, 3) RGB image."""
    f = rgb.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    # 4 fractional bits: a 1-2 px mouth gap stays a gap, not a rounded-off line
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], (1,), lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def mouth_cavity_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Pixels inside the inner-lip ring, shrunk so the lips' own (bright, red) pixels stay out."""
    import cv2

    ring = landmarks[T.INNER_LIP_RING].astype(np.float64)
    centre = ring.mean(axis=0)
    mask = _polygon_mask(shape, centre + CAVITY_SHRINK * (ring - centre))
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def cheek_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Two discs on the cheeks (landmarks 50, 280), radius 0.06 x the outer-eye-corner span."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    radius = CHEEK_RADIUS_FRACTION * _span(landmarks, *EYE_OUTER_CORNERS)
    mask = np.zeros(shape, bool)
    for i in CHEEKS:
        cx, cy = landmarks[i]
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    return mask


def cavity_ratio(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """Mean luma inside the mouth / mean luma of the cheeks; nan when the mouth holds no pixel."""
    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    inside, cheeks = mouth_cavity_mask(shape, landmarks), cheek_mask(shape, landmarks)
    if not inside.any() or not cheeks.any():
        return float("nan")
    y = luminance(rgb)
    skin = float(y[cheeks].mean())
    return float(y[inside].mean()) / skin if skin > 1e-6 else float("nan")


def cavity_darkness(ratios: np.ndarray, openings: np.ndarray) -> tuple[float, np.ndarray]:
    """(median cavity ratio, the ratios it rests on) over the frames whose opening is in the render's
    top 15 % and above 0.08 (a barely open mouth shows lips and shadow, not its interior)."""
    ratios, openings = np.asarray(ratios, np.float64), np.asarray(openings, np.float64)
    seen = np.isfinite(openings)
    if not seen.any():
        return float("nan"), np.zeros(0)
    cut = float(np.percentile(openings[seen], 100 * (1 - CAVITY_TOP_FRACTION)))
    known = np.nan_to_num(openings, nan=-1.0)
    chosen = ratios[(known >= cut) & (known > CAVITY_MIN_OPENING) & np.isfinite(ratios)]
    return (float(np.median(chosen)) if chosen.size else float("nan")), chosen


def lip_line_band(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """A band along the line midway between the inner upper and lower lip contours, corner to corner
    (78 to 308), half-height max(2 px, 0.03 x mouth width): where teeth would show between closed lips."""
    upper = landmarks[T.INNER_LIP_UPPER].astype(np.float64)  # 78 ... 308
    lower = landmarks[T.INNER_LIP_LOWER[::-1]].astype(np.float64)  # 78 ... 308, facing upper point by point
    middle = (upper + lower) / 2
    half = max(2.0, TEETH_BAND_FRACTION * _span(landmarks, 78, 308))
    shift = np.array([0.0, half])
    return _polygon_mask(shape, np.concatenate([middle - shift, (middle + shift)[::-1]]))


def teeth_fraction(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the lip-line band's pixels that look like teeth: bright (HSV V above 0.75 x the face's
    95th-percentile V) and unsaturated (S < 0.25). Skin and lips are saturated, a closed mouth's line dark."""
    import cv2

    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    band = lip_line_band(shape, landmarks)
    hull = cv2.convexHull(np.round(landmarks[:468]).astype(np.int32))
    face = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(face, hull, (1,))
    if not band.any() or not face.any():
        return float("nan")
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # float: S, V in 0..1
    v_face = float(np.percentile(hsv[..., 2][face.astype(bool)], 95))
    teeth = (hsv[..., 2] > TEETH_V_FRACTION * v_face) & (hsv[..., 1] < TEETH_MAX_S)
    return float(teeth[band].mean())


def rms_dbfs(rms: np.ndarray) -> np.ndarray:
    """RMS (full scale 1.0) in dBFS; -inf for digital silence, nan stays nan."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.asarray(rms, np.float64))


def silent_frames(rms_db: np.ndarray, fps: float, margin_s: float = SILENCE_MARGIN_S) -> np.ndarray:
    """Frames whose audio is below -45 dBFS and at least margin_s from any frame that is not
    (frames without audio count as speech: unknown is not silence)."""
    rms_db = np.asarray(rms_db, np.float64)
    speech = ~(np.nan_to_num(rms_db, nan=0.0) < SILENCE_DBFS)
    margin = int(math.ceil(margin_s * fps - 1e-9))
    near = np.convolve(speech.astype(np.int32), np.ones(2 * margin + 1, np.int32), mode="same") > 0
    return ~near


def finite_median(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def finite_mean(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")


def finite_min(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.min()) if v.size else float("nan")
