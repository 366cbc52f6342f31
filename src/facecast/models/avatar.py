"""Avatars: everything derived once from a portrait, kept in a content-addressed store.

An avatar is the square head-and-shoulders crop of the photo, its 478 face-mesh landmarks, the 468-vertex
metric mesh and the 4x4 facial transformation matrix (docs/aniportrait.md §3). The store keeps each one under
a hash of the photo bytes and the crop size, so adding the same photo again reuses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facecast.config import MAX_SIZE, MIN_SIZE
from facecast.models.face.crop import FACE_WIDTH_FRACTION, crop_square, head_and_shoulders_box
from facecast.models.face.geometry import fit_face_geometry
from facecast.models.face.landmarks import detect_faces
from facecast.models.face.matte import person_matte
from facecast.models.face.portrait_checks import eyes_closed, mouth_wide_open, to_pixels

MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Refused from the header, before decoding: a 128 KB PNG can claim 40 megapixels (+580 MB decoded).
# 24 MP covers the photos of today's phones and cameras (6000 x 4000).
MAX_IMAGE_PIXELS = 24_000_000
# Larger photos are reduced while decoding (JPEG draft mode) or right after: a portrait crop needs no more.
MAX_DECODE_SIDE = 4096
MIN_FACE_WIDTH_PX = 64  # cheek-to-cheek width in the original photo
# Crops enlarged more than this are called soft. Up to 1.25x, Lanczos adds little blur next to what the
# warp's own resampling does; from 1.5x on, lashes, hair and teeth visibly smear. The shared portraits
# prepared at 512 px measure 1.09x (grace_hopper_512) and 1.14x (astronaut_512), astronaut.png 2.8x.
MAX_SHARP_SCALE = 1.25
SIZE_STEP = 8  # suggested sizes are multiples of 8: every engine takes them (aniportrait needs them)


class AvatarError(ValueError):
    """The photo cannot become an avatar; the message is one sentence for the user."""


@dataclass
class Avatar:
    """A prepared portrait.

    image: (S, S, 3) uint8 RGB crop; landmarks: (478, 3) float32 normalised to the crop;
    mesh: (468, 3) float64 metric canonical-space vertices (cm); matrix: (4, 4) float64 facial
    transformation (canonical → camera space); matte: (S, S) uint8 person coverage (models/face/matte.py;
    None for avatars stored before mattes existed: the renderer then computes it).
    """

    id: str
    image: np.ndarray
    landmarks: np.ndarray
    mesh: np.ndarray
    matrix: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    matte: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def _decode_image(data: bytes) -> np.ndarray:
    if len(data) == 0:
        raise AvatarError("the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise AvatarError(f"the image is larger than the {MAX_IMAGE_BYTES // (1024 * 1024)} MB limit")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise AvatarError(
                    f"the image has {img.width * img.height / 1e6:.1f} megapixels, more than the "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} allowed"
                )
            img.draft("RGB", (MAX_DECODE_SIDE, MAX_DECODE_SIDE))  # JPEG: decode at a reduced scale
            img.load()  # forces a full decode: truncated files fail here
            if max(img.size) > MAX_DECODE_SIDE:
                img.thumbnail((MAX_DECODE_SIDE, MAX_DECODE_SIDE))
            rgb = ImageOps.exif_transpose(img).convert("RGB")
    except AvatarError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise AvatarError(
            "the file is not an image in a format facecast can read (PNG, JPEG, WebP or another common format)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise AvatarError(f"the image file is truncated or corrupt ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8)


def _single_face(image: np.ndarray) -> np.ndarray:
    faces = detect_faces(image, max_faces=2)
    if not faces:
        raise AvatarError("no face was found in the photo")
    if len(faces) > 1:
        raise AvatarError("the photo shows several faces; use a portrait with exactly one")
    return faces[0]


def upscale_warning(meta: dict[str, Any], frame_size: int | None = None) -> str | None:
    """Why frames of `frame_size` px (default: the avatar's size) from this crop look soft, or None.

    Works from crop_box alone, so avatars stored before face_width_px was recorded get it too.
    """
    box, size = meta.get("crop_box"), frame_size or meta.get("size")
    if not box or not size:
        return None
    side = int(box[2])
    scale = size / side
    if scale <= MAX_SHARP_SCALE:
        return None
    # The crop is twice the face's width (crop.head_and_shoulders_box), so this is within a pixel.
    face_w = meta.get("face_width_px") or round(side * FACE_WIDTH_FRACTION)
    sharp = max(MIN_SIZE, side // SIZE_STEP * SIZE_STEP)  # side >= MIN_SIZE: smaller faces are refused
    return (
        f"the face is {face_w} px wide in the photo, so the {size} px frame is upscaled {scale:.1f}x and "
        f"will look soft; use a larger photo or a size of {sharp} px (--size {sharp})"
    )


def _with_sharpness(meta: dict[str, Any]) -> dict[str, Any]:
    """meta with crop_scale (output pixels per photo pixel: above 1, upscaled), face_width_px and warning
    filled in: at preparation, and where an older facecast left them out."""
    box, size = meta.get("crop_box"), meta.get("size")
    if "crop_scale" in meta or not box or not size:
        return meta
    face_w = meta.get("face_width_px") or round(box[2] * FACE_WIDTH_FRACTION)
    meta = dict(meta, crop_scale=round(size / box[2], 3), face_width_px=face_w)
    warning = upscale_warning(meta)
    return meta | {"warning": warning} if warning else meta


def prepare_avatar(data: bytes, *, size: int = 512, name: str = "") -> Avatar:
    """Photo bytes → Avatar (not stored). Raises AvatarError with one clear sentence."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise AvatarError(f"the avatar size must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    image = _decode_image(data)
    h, w = image.shape[:2]
    lmk = _single_face(image)
    face_w = float((lmk[:468, 0].max() - lmk[:468, 0].min()) * w)
    if face_w < MIN_FACE_WIDTH_PX:
        raise AvatarError(
            f"the face is too small ({face_w:.0f} px wide, at least {MIN_FACE_WIDTH_PX} px needed)"
        )
    x0, y0, side = head_and_shoulders_box(lmk, w, h)
    crop = crop_square(image, x0, y0, side, size)
    faces = detect_faces(crop, max_faces=2)  # re-detect on the crop: more pixels on the face, exact frame
    if len(faces) != 1:
        raise AvatarError("the face could not be found again after cropping; try a clearer frontal portrait")
    landmarks = faces[0]
    # Measured on the crop: its landmarks are the ones the renderer animates.
    points = to_pixels(landmarks, size, size)
    if eyes_closed(points):
        raise AvatarError("the eyes are closed in the photo; use a portrait with open eyes")
    if mouth_wide_open(points):
        raise AvatarError(
            "the mouth is wide open in the photo; use a portrait with a closed mouth or a smile"
        )
    mesh, matrix = fit_face_geometry(landmarks, size, size)
    meta = _with_sharpness(
        {"name": name, "size": size, "source_width": w, "source_height": h, "crop_box": [x0, y0, side],
         "face_width_px": round(face_w)}
    )  # fmt: skip
    matte = person_matte(crop)
    return Avatar(id="", image=crop, landmarks=landmarks, mesh=mesh, matrix=matrix, meta=meta, matte=matte)


def avatar_id(data: bytes, size: int) -> str:
    return hashlib.sha256(data + f"|size={size}".encode()).hexdigest()[:16]


class AvatarStore:
    """Avatars on disk: ROOT/<id>/{image.png, landmarks.npy, mesh.npy, matrix.npy, matte.png, meta.json}."""

    FILES = ("image.png", "landmarks.npy", "mesh.npy", "matrix.npy", "matte.png", "meta.json")

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, avatar_id: str) -> Path:
        # Ids are 16-64 hex digits: refuse anything that could escape the root or overflow a file name.
        if not (avatar_id.isascii() and avatar_id.isalnum() and len(avatar_id) <= 64):
            raise KeyError(avatar_id)
        return self.root / avatar_id

    def add(self, data: bytes, *, name: str = "", size: int = 512, rename: bool = True) -> Avatar:
        """Prepare and store a photo; the same bytes and size give the same avatar without recomputing.

        A non-empty `name` for a photo already stored becomes its name, unless rename=False (a name that is
        only a default, such as the file name of a photo passed to `render`).
        """
        aid = avatar_id(data, size)
        if (self._dir(aid) / "meta.json").is_file():
            avatar = self.get(aid)
            if rename and name and avatar.meta.get("name") != name:
                avatar.meta["name"] = name
                self._write_meta(aid, avatar.meta)
            return avatar
        avatar = prepare_avatar(data, size=size, name=name)
        avatar.id = aid
        avatar.meta.update(id=aid, created=time.time(), sha256=hashlib.sha256(data).hexdigest())
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{aid}-", dir=self.root))  # written whole, then renamed
        try:
            Image.fromarray(avatar.image).save(tmp / "image.png")
            np.save(tmp / "landmarks.npy", avatar.landmarks)
            np.save(tmp / "mesh.npy", avatar.mesh)
            np.save(tmp / "matrix.npy", avatar.matrix)
            if avatar.matte is not None:
                Image.fromarray(avatar.matte).save(tmp / "matte.png")
            (tmp / "meta.json").write_text(json.dumps(avatar.meta, indent=1))
            try:
                tmp.rename(self._dir(aid))
            except OSError:  # a concurrent add of the same photo won the race
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return avatar

    def _write_meta(self, avatar_id: str, meta: dict[str, Any]) -> None:
        """Replace meta.json whole (written beside it, then renamed): readers never see half a file."""
        folder = self._dir(avatar_id)
        tmp = folder / f".meta-{uuid.uuid4().hex}.json"
        try:
            tmp.write_text(json.dumps(meta, indent=1))
            tmp.replace(folder / "meta.json")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get(self, avatar_id: str) -> Avatar:
        folder = self._dir(avatar_id)
        if not (folder / "meta.json").is_file():
            raise KeyError(avatar_id)
        meta = _with_sharpness(json.loads((folder / "meta.json").read_text()))
        with Image.open(folder / "image.png") as img:
            image = np.asarray(img.convert("RGB"), dtype=np.uint8)
        matte = None
        if (folder / "matte.png").is_file():
            with Image.open(folder / "matte.png") as img:
                matte = np.asarray(img.convert("L"), dtype=np.uint8)
        return Avatar(
            id=avatar_id,
            image=image,
            landmarks=np.load(folder / "landmarks.npy"),
            mesh=np.load(folder / "mesh.npy"),
            matrix=np.load(folder / "matrix.npy"),
            meta=meta,
            matte=matte,
        )

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        metas = []
        for folder in sorted(self.root.iterdir()):
            meta_file = folder / "meta.json"
            if folder.name[0] != "." and meta_file.is_file():
                metas.append(_with_sharpness(json.loads(meta_file.read_text())))
        return sorted(metas, key=lambda m: m.get("created", 0))

    def delete(self, avatar_id: str) -> None:
        folder = self._dir(avatar_id)
        if not folder.is_dir():
            raise KeyError(avatar_id)
        shutil.rmtree(folder)

    def default(self) -> Avatar:
        """The bundled public-domain portrait (Grace Hopper), added on first use."""
        data = resources.files("facecast.assets").joinpath("default_portrait.png").read_bytes()
        return self.add(data, name="default (Grace Hopper)", rename=False)

    def resolve(self, ref: str, *, size: int = 512) -> Avatar:
        """An avatar id in the store, or a path to a photo (added to the store)."""
        path = Path(ref)
        if path.is_file():
            return self.add(path.read_bytes(), name=path.name, size=size, rename=False)
        try:
            return self.get(ref)
        except KeyError:
            raise AvatarError(f"'{ref}' is neither a photo file nor an avatar id in {self.root}") from None
