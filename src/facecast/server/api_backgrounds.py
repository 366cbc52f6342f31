"""/v1/backgrounds: upload an image (multipart field `image`), list, get, delete; sessions then take
`background: "image:<id>"`.

Each upload is decoded (models/render/background.py), turned upright by its EXIF orientation and stored
once as a clean RGB PNG under a hash of its pixels: FACECAST_HOME/backgrounds/<id>.png, beside the avatar
store, written whole and then renamed. API clients name backgrounds by id only, never by path: the
server's files are not theirs to read. Deleting one leaves running sessions as they are (each built its
plate when it started).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

from facecast.models.render.background import BackgroundError, decode_background_image
from facecast.server.api_avatars import read_multipart_file
from facecast.server.errors import ApiError, not_found
from facecast.server.registry import Registry
from facecast.server.state import REGISTRY

# Refused from the header, before decoding (as avatar photos are): a small PNG can claim a huge canvas.
MAX_BACKGROUND_PIXELS = 24_000_000
ID_RE = re.compile(r"[0-9a-f]{16}")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class BadBackgroundImage(ValueError):
    """The upload cannot be a background (one sentence); `status` 400 or 413 (too many pixels)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def background_id(image: np.ndarray) -> str:
    """The id of an RGB image: a hash of its size and pixels (the same picture in any format, one id)."""
    h, w = image.shape[:2]
    return hashlib.sha256(f"{w}x{h}|".encode() + np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def decode_upload(data: bytes) -> np.ndarray:
    """The uploaded file as an upright (H, W, 3) uint8 RGB image, or BadBackgroundImage."""
    unreadable = "the upload is not an image facecast can read (PNG, JPEG, WebP or another common format)"
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise BadBackgroundImage(unreadable) from None
    if width * height > MAX_BACKGROUND_PIXELS:
        raise BadBackgroundImage(
            f"the image has {width * height / 1e6:.1f} megapixels, more than the "
            f"{MAX_BACKGROUND_PIXELS // 1_000_000} allowed",
            413,
        )
    try:
        image = decode_background_image(data)
    except (BackgroundError, SyntaxError, Image.DecompressionBombError):
        raise BadBackgroundImage(unreadable) from None
    if orientation in _TRANSPOSE:
        image = np.asarray(Image.fromarray(image).transpose(_TRANSPOSE[orientation]), dtype=np.uint8)
    return image


class BackgroundStore:
    """Background images on disk: ROOT/<id>.png, each an RGB PNG re-encoded from its upload."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, registry: Registry) -> BackgroundStore:
        return cls(registry.settings.home / "backgrounds")

    def path(self, bid: str) -> Path:
        """The stored image of `bid`; KeyError for an id that is malformed or not stored."""
        if not ID_RE.fullmatch(bid):
            raise KeyError(bid)
        path = self.root / f"{bid}.png"
        if not path.is_file():
            raise KeyError(bid)
        return path.resolve()

    def add(self, data: bytes) -> dict[str, Any]:
        """Decode, check and store an upload (the same picture again: the stored one); its description."""
        image = decode_upload(data)
        bid = background_id(image)
        final = self.root / f"{bid}.png"
        if not final.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{bid}-{uuid.uuid4().hex}.png"  # written whole, then renamed
            try:
                Image.fromarray(image).save(tmp, format="PNG")
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        return self.get(bid)

    def get(self, bid: str) -> dict[str, Any]:
        path = self.path(bid)
        try:
            with Image.open(path) as img:
                width, height = img.size
            stat = path.stat()
        except (OSError, SyntaxError, ValueError):  # deleted meanwhile
            raise KeyError(bid) from None
        return {
            "id": bid,
            "width": width,
            "height": height,
            "bytes": stat.st_size,
            "created": stat.st_mtime,
            "background": f"image:{bid}",  # what POST /v1/sessions takes
            "links": {"self": f"/v1/backgrounds/{bid}", "image": f"/v1/backgrounds/{bid}/image"},
        }

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        items = []
        for path in self.root.glob("*.png"):
            try:
                items.append(self.get(path.stem))
            except KeyError:  # a stray file, or deleted meanwhile
                continue
        return sorted(items, key=lambda item: (item["created"], item["id"]))

    def delete(self, bid: str) -> None:
        try:
            self.path(bid).unlink()
        except FileNotFoundError:
            raise KeyError(bid) from None


async def create_background(request: web.Request) -> web.Response:
    """POST /v1/backgrounds: multipart `image`; 201 with the stored background (the same image: same id)."""
    registry = request.app[REGISTRY]
    data, _ = await read_multipart_file(request, "image", registry.settings.server.max_upload_bytes)
    if not data:
        raise ApiError(400, "empty_upload", "the uploaded image is empty")
    store = BackgroundStore.of(registry)
    try:
        info = await asyncio.get_running_loop().run_in_executor(None, store.add, data)
    except BadBackgroundImage as exc:
        code = "payload_too_large" if exc.status == 413 else "bad_background_image"
        raise ApiError(exc.status, code, str(exc)) from None
    return web.json_response(info, status=201, headers={"Location": info["links"]["self"]})


async def list_backgrounds(request: web.Request) -> web.Response:
    store = BackgroundStore.of(request.app[REGISTRY])
    items = await asyncio.get_running_loop().run_in_executor(None, store.list)
    return web.json_response({"backgrounds": items})


async def get_background(request: web.Request) -> web.Response:
    store = BackgroundStore.of(request.app[REGISTRY])
    bid = request.match_info["bid"]
    try:
        info = await asyncio.get_running_loop().run_in_executor(None, store.get, bid)
    except KeyError:
        raise not_found("background", bid) from None
    return web.json_response(info)


async def get_background_image(request: web.Request) -> web.StreamResponse:
    store = BackgroundStore.of(request.app[REGISTRY])
    bid = request.match_info["bid"]
    try:
        path = store.path(bid)
    except KeyError:
        raise not_found("background", bid) from None
    return web.FileResponse(path, headers={"Content-Type": "image/png"})


async def delete_background(request: web.Request) -> web.Response:
    """DELETE /v1/backgrounds/{bid}: 204; sessions already showing it keep the plate they built."""
    store = BackgroundStore.of(request.app[REGISTRY])
    bid = request.match_info["bid"]
    try:
        await asyncio.get_running_loop().run_in_executor(None, store.delete, bid)
    except KeyError:
        raise not_found("background", bid) from None
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/backgrounds", create_background)
    app.router.add_get("/v1/backgrounds", list_backgrounds)
    app.router.add_get("/v1/backgrounds/{bid}", get_background)
    app.router.add_get("/v1/backgrounds/{bid}/image", get_background_image)
    app.router.add_delete("/v1/backgrounds/{bid}", delete_background)
