"""Measures of a portrait's face mesh that decide whether it can be animated: eyes open, mouth closed.

Pure functions over the (478, 3) landmarks detect_faces returns (x, y normalised by the image's width
and height): each measure is a ratio of pixel distances, so it does not depend on the photo's size.
The mouth measure is the one `facecast bench lipsync` tracks in rendered video (bench.mouth_track
imports it from here), and the eye measure the one `facecast bench realism` counts blinks with.
"""

from __future__ import annotations

import numpy as np

# Upper/lower inner-lip landmarks facing each other, left to right across the middle of the mouth
# (the corners 78/308 are left out: they touch whatever the mouth does).
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = ((81, 178), (82, 87), (13, 14), (312, 317), (311, 402))
EYE_OUTER_CORNERS = (33, 263)
# Per eye: its two corners, then upper/lower lid landmarks facing each other (mediapipe face mesh).
RIGHT_EYE = ((33, 133), ((160, 144), (159, 145), (158, 153)))
LEFT_EYE = ((263, 362), ((387, 373), (386, 374), (385, 380)))

# Thresholds measured on the 512 px crops of three public-domain test portraits and of photos made from them
# (tests/models/test_portrait_checks.py):
# - eyes, mean EAR of both: open 0.267 (grace_hopper_512: narrow eyes behind glasses), 0.320 (astronaut),
#   0.329 (astronaut_512); shut by the warp renderer's blink 0.138 (astronaut_512), 0.166 (Grace); painted
#   shut with a lash line 0.065 (astronaut), 0.104 (Grace). 0.20 sits between the closest open and shut
#   (1.3x and 1.2x away), the value EAR blink detectors commonly start from.
# - mouth opening: 0.002 (Grace), 0.108-0.112 (the astronaut's toothy smile, which must pass); rendered
#   with the jaw dropped 2 cm 0.17 (astronaut), 0.20 (Grace). 0.16 keeps the smile 1.45x below; a smile or
#   slightly parted lips pass, as the rig closes those for silence without stretching lips and chin.
MIN_EYE_ASPECT_RATIO = 0.20
MAX_MOUTH_OPENING = 0.16


def to_pixels(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 2) pixel coordinates of normalised landmarks in an image of width x height."""
    return np.asarray(landmarks, dtype=np.float64)[:, :2] * np.array([width, height], dtype=np.float64)


def mouth_opening(landmarks_px: np.ndarray) -> float:
    """Inner-lip opening / outer-eye-corner distance from (>=468, 2) pixel landmarks.

    About 0.0 for closed lips, 0.1-0.3 for speech; nan for a degenerate mesh.
    """
    upper = landmarks_px[[a for a, _ in INNER_LIP_PAIRS]]
    lower = landmarks_px[[b for _, b in INNER_LIP_PAIRS]]
    lips = float(np.mean(np.linalg.norm(upper - lower, axis=1)))
    eyes = float(np.linalg.norm(landmarks_px[EYE_OUTER_CORNERS[0]] - landmarks_px[EYE_OUTER_CORNERS[1]]))
    return lips / eyes if eyes > 1e-6 else float("nan")


def _eye_aspect_ratio(
    landmarks_px: np.ndarray, eye: tuple[tuple[int, int], tuple[tuple[int, int], ...]]
) -> float:
    (corner_a, corner_b), pairs = eye
    upper = landmarks_px[[a for a, _ in pairs]]
    lower = landmarks_px[[b for _, b in pairs]]
    height = float(np.mean(np.linalg.norm(upper - lower, axis=1)))
    width = float(np.linalg.norm(landmarks_px[corner_a] - landmarks_px[corner_b]))
    return height / width if width > 1e-6 else float("nan")


def eye_aspect_ratios(landmarks_px: np.ndarray) -> tuple[float, float]:
    """(right, left) eye aspect ratio: mean lid-to-lid distance / corner-to-corner distance of each eye.

    The subject's right eye is the one on the image's left. Open eyes measure about 0.25-0.35, closed
    ones 0.05-0.17: the mesh rarely lets the lids meet (Soukupová and Čech's EAR, with three lid pairs).
    """
    return _eye_aspect_ratio(landmarks_px, RIGHT_EYE), _eye_aspect_ratio(landmarks_px, LEFT_EYE)


def eyes_closed(landmarks_px: np.ndarray) -> bool:
    """Both eyes closed (their mean EAR below MIN_EYE_ASPECT_RATIO): the portrait cannot blink.

    The mean, not each eye: on a turned head the far eye's landmarks are the less certain.
    """
    return float(np.mean(eye_aspect_ratios(landmarks_px))) < MIN_EYE_ASPECT_RATIO


def mouth_wide_open(landmarks_px: np.ndarray) -> bool:
    """Lips apart beyond MAX_MOUTH_OPENING: too far for the rig to close them convincingly for silence."""
    return mouth_opening(landmarks_px) > MAX_MOUTH_OPENING
