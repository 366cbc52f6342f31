"""Face landmarks with MediaPipe's face mesh (the model bundled in the mediapipe wheel, 478 points)."""

from __future__ import annotations

import threading

import numpy as np

NUM_LANDMARKS = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)

_lock = threading.Lock()


def detect_faces(image: np.ndarray, max_faces: int = 2) -> list[np.ndarray]:
    """Detect faces in an RGB uint8 image (H, W, 3).

    Returns one (478, 3) float32 array per face: x, y normalised to [0, 1] by width/height, z in
    MediaPipe's units (roughly the scale of x). Static-image mode: every call detects from scratch.
    """
    import mediapipe as mp  # heavy import, only when needed

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("detect_faces expects an RGB uint8 image (H, W, 3)")
    with (
        _lock,
        mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
        ) as mesh,
    ):
        result = mesh.process(np.ascontiguousarray(image))
    faces = result.multi_face_landmarks or []
    return [np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32) for f in faces]
