"""What shows behind the person: the photo's own background (`keep`), a colour, an image, the photo's
background blurred, or nothing (`transparent`: the alpha goes out beside the picture).

A Background is parsed once from its spec (`keep`, `color:#RRGGBB`, `image:PATH`, `blur`,
`transparent`); a Compositor makes the plate once per renderer and lays each frame over it with the
frame's warped matte (one cv2.blendLinear: well under a millisecond at 512²).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

KINDS = ("keep", "color", "image", "blur", "transparent")
BLUR_SIGMA_FRACTION = 1 / 40  # of the frame's side
DECONTAMINATE_SIGMA_FRACTION = 1 / 64  # ~8 px at 512: reaches across the matte's soft edge


class BackgroundError(ValueError):
    """A background spec that cannot be used (one sentence)."""


@dataclass(frozen=True)
class Background:
    kind: str = "keep"
    color: tuple[int, int, int] = (0, 0, 0)
    image: np.ndarray | None = None  # RGB, any size (kind image)

    @property
    def needs_matte(self) -> bool:
        return self.kind != "keep"


def parse_background(spec: str) -> Background:
    """`keep`, `color:#RRGGBB`, `image:PATH`, `blur` or `transparent` → Background (BackgroundError if not)."""
    kind, _, arg = spec.partition(":")
    if kind in ("keep", "blur", "transparent") and not arg:
        return Background(kind)
    if kind == "color":
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", arg):
            raise BackgroundError(f"unknown colour {arg!r}: give it as color:#RRGGBB, e.g. color:#00b140")
        return Background("color", color=(int(arg[1:3], 16), int(arg[3:5], 16), int(arg[5:7], 16)))
    if kind == "image" and arg:
        path = Path(arg).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BackgroundError(
                f"the background image {arg!r} cannot be read ({exc.strerror or exc})"
            ) from None
        return Background("image", image=decode_background_image(data, arg))
    raise BackgroundError(
        f"unknown background {spec!r}: use keep, color:#RRGGBB, image:PATH, blur or transparent"
    )


def decode_background_image(data: bytes, name: str = "the background") -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError):
        raise BackgroundError(f"{name!r} is not an image PIL can read (PNG, JPEG, WebP, ...)") from None


def decontaminate(image: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The portrait with its soft edge recoloured from the person just inside it: an edge pixel mixes the
    person with the photo's own background, which would show as a fringe over any other background."""
    coverage = matte.astype(np.float32) * (1.0 / 255.0)
    core = (coverage > 0.95).astype(np.float32)
    sigma = max(1.0, image.shape[0] * DECONTAMINATE_SIGMA_FRACTION)
    inside = cv2.GaussianBlur(image.astype(np.float32) * core[..., None], (0, 0), sigma)
    weight = cv2.GaussianBlur(core, (0, 0), sigma)[..., None]
    person = inside / np.maximum(weight, 1e-4)
    edge = ((coverage > 0) & (coverage <= 0.95) & (weight[..., 0] > 1e-3))[..., None]
    return np.where(edge, np.clip(person, 0, 255), image).astype(np.uint8)


class Compositor:
    """Lays rendered frames over the background's plate, made once for `portrait` at `size`."""

    def __init__(self, background: Background, portrait: np.ndarray, matte: np.ndarray) -> None:
        self.background = background
        size = portrait.shape[0]
        self.plate: np.ndarray | None = None
        if background.kind == "color":
            self.plate = np.empty_like(portrait)
            self.plate[:] = background.color
        elif background.kind == "image" and background.image is not None:
            self.plate = _cover(background.image, size)
        elif background.kind == "blur":
            self.plate = _blurred_surroundings(portrait, matte)

    def compose(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """frame (S, S, 3) RGB over the plate by alpha (S, S) uint8; transparent/keep: the frame as is."""
        if self.plate is None:
            return frame
        weight = alpha.astype(np.float32) * (1.0 / 255.0)
        return cv2.blendLinear(frame, self.plate, weight, 1.0 - weight)


def _cover(image: np.ndarray, size: int) -> np.ndarray:
    """Scale to cover a size x size square, centred (as CSS background-size: cover)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(
        image, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    y0, x0 = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return np.ascontiguousarray(resized[y0 : y0 + size, x0 : x0 + size])


def _blurred_surroundings(portrait: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The photo's background with the person filled in from around them, then blurred: no ghost of the
    person (a halo) shows through where the head moves."""
    size = portrait.shape[0]
    small = max(64, size // 4)
    person = cv2.resize((matte > 32).astype(np.uint8) * 255, (small, small), interpolation=cv2.INTER_NEAREST)
    person = cv2.dilate(person, np.ones((5, 5), np.uint8))
    filled = cv2.inpaint(
        cv2.resize(portrait, (small, small), interpolation=cv2.INTER_AREA), person, 5, cv2.INPAINT_TELEA
    )
    sigma = size * BLUR_SIGMA_FRACTION
    return cv2.GaussianBlur(cv2.resize(filled, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), sigma)
