"""/v1/avatars: upload (multipart field `image`), list, get, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from facecast.server.errors import ApiError, clip, not_found
from facecast.server.schemas import MAX_NAME_CHARS
from facecast.server.state import REGISTRY


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if not isinstance(v, (bytes, bytearray))}


async def read_multipart_file(request: web.Request, field: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and filename of multipart `field`, refusing more than `max_bytes`."""
    data, filename, _ = await read_multipart_form(request, field, max_bytes)
    return data, filename


async def read_multipart_form(
    request: web.Request, field: str, max_bytes: int, text_fields: tuple[str, ...] = ()
) -> tuple[bytes, str, dict[str, str]]:
    """The bytes and filename of multipart file `field`, and the `text_fields` present (before or after it)."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"send multipart/form-data with a '{field}' field")
    try:
        return await _read_parts(request, field, max_bytes, text_fields)
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:  # aiohttp: bad framing
        raise ApiError(
            400, "bad_multipart", f"the multipart body is malformed ({clip(str(exc), 120)})"
        ) from None


async def _read_parts(
    request: web.Request, field: str, max_bytes: int, text_fields: tuple[str, ...]
) -> tuple[bytes, str, dict[str, str]]:
    reader = await request.multipart()
    found: tuple[bytes, str] | None = None
    texts: dict[str, str] = {}
    async for part in reader:
        name = getattr(part, "name", None)
        if name in text_fields and name not in texts:
            raw = await part.read()  # type: ignore[union-attr]
            if len(raw) > MAX_NAME_CHARS * 4:
                raise ApiError(400, "bad_field", f"multipart field '{name}' is too long")
            texts[name] = raw.decode("utf-8", "replace")
        elif name == field and found is None:
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):  # type: ignore[union-attr]
                data += chunk
                if len(data) > max_bytes:
                    raise ApiError(413, "payload_too_large", f"the upload is larger than {max_bytes} bytes")
            found = bytes(data), getattr(part, "filename", None) or ""
            if not text_fields:
                break
    if found is None:
        raise ApiError(400, "missing_field", f"multipart field '{field}' is missing")
    return found[0], found[1], texts


async def create_avatar(request: web.Request) -> web.Response:
    """POST /v1/avatars: multipart `image` and an optional `name` (default: the image's file name).

    The same image again returns the stored avatar, renamed to this upload's name."""
    from facecast.models.avatar import AvatarError

    registry = request.app[REGISTRY]
    data, filename, texts = await read_multipart_form(
        request, "image", registry.settings.server.max_upload_bytes, ("name",)
    )
    if not data:
        raise ApiError(400, "empty_upload", "the uploaded image is empty")
    name = (texts.get("name") or "").strip()[:MAX_NAME_CHARS] or filename
    size = registry.settings.render.size
    try:
        avatar = await asyncio.get_running_loop().run_in_executor(
            None, lambda: registry.avatars.add(data, name=name, size=size)
        )
    except AvatarError as exc:
        raise ApiError(422, "bad_avatar", str(exc)) from None
    return web.json_response(_public(avatar.meta) | {"id": avatar.id}, status=201)


async def list_avatars(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    items = await asyncio.get_running_loop().run_in_executor(None, registry.avatars.list)
    return web.json_response({"avatars": [_public(m) for m in items]})


async def get_avatar(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    aid = request.match_info["aid"]
    for meta in await asyncio.get_running_loop().run_in_executor(None, registry.avatars.list):
        if meta.get("id") == aid:
            return web.json_response(_public(meta))
    raise not_found("avatar", aid)


async def get_avatar_image(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    aid = request.match_info["aid"]
    path = registry.avatars.root / aid / "image.png"
    if not aid.isalnum() or not path.is_file():
        raise not_found("avatar", aid)
    return web.FileResponse(path)


async def delete_avatar(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    aid = request.match_info["aid"]
    if any(live.avatar_id == aid for live in registry.sessions.values()):
        raise ApiError(409, "avatar_in_use", f"avatar '{aid}' is used by a live session")
    try:
        await asyncio.get_running_loop().run_in_executor(None, registry.avatars.delete, aid)
    except KeyError:
        raise not_found("avatar", aid) from None
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/avatars", create_avatar)
    app.router.add_get("/v1/avatars", list_avatars)
    app.router.add_get("/v1/avatars/{aid}", get_avatar)
    app.router.add_get("/v1/avatars/{aid}/image", get_avatar_image)
    app.router.add_delete("/v1/avatars/{aid}", delete_avatar)
