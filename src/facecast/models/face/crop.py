"""Head-and-shoulders square crop around a detected face."""

from __future__ import annotations

import cv2
import numpy as np

FACE_WIDTH_FRACTION = 0.5  # face (cheek to cheek) spans about half the crop width
FACE_CENTER_Y_FRACTION = 0.42  # face centre sits a little above the middle: room for shoulders


def head_and_shoulders_box(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int]:
    """Square crop (x0, y0, side) in pixels of the source image; may extend past its borders."""
    pts = landmarks[:468, :2] * np.array([width, height])
    x_min, y_min = pts.min(0)
    x_max, y_max = pts.max(0)
    face_w = x_max - x_min
    side = int(round(face_w / FACE_WIDTH_FRACTION))
    cx, cy = (x_min + x_max) / 2.0, (y_min + y_max) / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side * FACE_CENTER_Y_FRACTION))
    return x0, y0, side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Crop [x0, x0+side) x [y0, y0+side), replicating the border where the photo is too tight, resize to size."""
    h, w = image.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - w), max(0, y0 + side - h)
    if pad_l or pad_t or pad_r or pad_b:
        image = cv2.copyMakeBorder(image, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    crop = image[y0 + pad_t : y0 + pad_t + side, x0 + pad_l : x0 + pad_l + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LANCZOS4
    return cv2.resize(crop, (size, size), interpolation=interp)
