"""The person's matte: which pixels of a prepared portrait are the person (face, hair, neck, shoulders).

MediaPipe's selfie segmentation (the general 256x256 model bundled in the pinned mediapipe) gives a soft
probability at low resolution; a guided filter with the portrait as guide moves its edge onto the image's
own edges (strands of hair, the collar), and a gentle ramp turns the probability into coverage. Computed
once per avatar (at preparation), then warped with the image every frame (models/render/warp.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from facecast.models.face.landmarks import MEDIAPIPE_LOCK, native_logs_filtered

GUIDE_RADIUS_FRACTION = 1 / 96  # of the image's side: ~5 px at 512
GUIDE_EPS = 1e-3
RAMP = (0.25, 0.75)  # probability → coverage: below 0 %, above 100 %


def person_matte(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB → (S, S) uint8 coverage of the person (255 = person)."""
    import mediapipe as mp

    with (
        MEDIAPIPE_LOCK,
        native_logs_filtered(),  # the graph logs while it is built, run and closed
        mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter,
    ):
        result = segmenter.process(np.ascontiguousarray(image))
    probability = np.clip(result.segmentation_mask.astype(np.float32), 0.0, 1.0)
    radius = max(2, round(image.shape[0] * GUIDE_RADIUS_FRACTION))
    guide = image.astype(np.float32) / 255.0
    refined = cv2.ximgproc.guidedFilter(guide=guide, src=probability, radius=radius, eps=GUIDE_EPS)
    low, high = RAMP
    coverage = np.clip((refined - low) / (high - low), 0.0, 1.0)
    return np.round(coverage * 255.0).astype(np.uint8)
