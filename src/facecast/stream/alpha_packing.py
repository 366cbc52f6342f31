"""A transparent session's picture for WebRTC, which carries no alpha: the person's colour and its alpha
side by side in one frame (2S x S: colour left, alpha as grey right), for the view page to put together
(client_web/view.js). Made on the engine worker thread (stream/engine_runner.py), so it is kept cheap.
"""

from __future__ import annotations

import cv2
import numpy as np


def _grey_luma() -> np.ndarray:
    """(256,) uint8: the I420 luma cv2 gives grey level g (R = G = B = g); its chroma is 128."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8), 2)  # 2 px per level: I420 wants even sizes
    grey = np.repeat(np.repeat(ramp[None, :, None], 3, axis=2), 2, axis=0)
    yuv: np.ndarray = cv2.cvtColor(grey, cv2.COLOR_RGB2YUV_I420)
    return np.ascontiguousarray(yuv[0, ::2])


GREY_LUMA = _grey_luma()


def packed_alpha_i420(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB colour and (S, S) uint8 alpha (S even) -> (3S/2, 2S) uint8 I420 of the packed
    picture (colour | alpha as grey), equal to cv2's conversion of the 2S x S RGB picture. Only the colour
    half is converted: the grey half's luma is a table look-up and its chroma is 128 (no 2x2 chroma block
    straddles the seam), so packing adds ~1 copy of the frame to the conversion, not a second conversion."""
    s = image.shape[0]
    q = s // 2
    colour: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).reshape(-1)  # Y (S*S), U, V (q*q each)
    out = np.empty(3 * s * s, np.uint8)  # Y (S x 2S), U (q x S), V (q x S)
    luma = out[: 2 * s * s].reshape(s, 2 * s)
    luma[:, :s] = colour[: s * s].reshape(s, s)
    luma[:, s:] = cv2.LUT(np.ascontiguousarray(alpha), GREY_LUMA)  # ~5x faster than numpy indexing
    for plane in range(2):
        src = colour[s * s + plane * q * q : s * s + (plane + 1) * q * q].reshape(q, q)
        dst = out[2 * s * s + plane * q * s : 2 * s * s + (plane + 1) * q * s].reshape(q, s)
        dst[:, :q] = src
        dst[:, q:] = 128
    return out.reshape(3 * s // 2, 2 * s)
