"""Background images through the API (issue 14): upload one (POST /v1/backgrounds), show it behind the
live person with `background: "image:<id>"`; what is not an image, too large, unknown or a server path is
refused in one sentence, and deleting one leaves a running session as it is."""

from __future__ import annotations

import asyncio
import io

import cv2
import numpy as np
import pytest
from facecast_client import BadRequest, FacecastClient, NotFound
from PIL import Image

from facecast.server.runner import RunningServer

SIZE = 256  # the live_server_fixtures frame size


def gradient(width: int = 400, height: int = 300) -> np.ndarray:
    """A picture no portrait has: red along x, green along y, a fixed blue; every pixel tells its place."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 90)], axis=-1).round().astype(np.uint8)


def encoded(image: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt)
    return out.getvalue()


def covered(image: np.ndarray, size: int) -> np.ndarray:
    """The image scaled to cover size x size, centred (what the compositor lays behind the person)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    y0, x0 = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[y0 : y0 + size, x0 : x0 + size]


async def frame_of(client: FacecastClient, sid: str) -> np.ndarray:
    frames = await client.frames(sid, image="rgb24")
    try:
        return (await asyncio.wait_for(frames.next_frame(), 10)).image
    finally:
        await frames.close()


async def test_an_uploaded_image_shows_behind_the_person(
    server: RunningServer, client: FacecastClient
) -> None:
    picture = gradient()
    stored = await client.add_background(encoded(picture))
    assert (stored["width"], stored["height"]) == (400, 300)
    assert stored["background"] == f"image:{stored['id']}"
    assert stored["links"]["self"] == f"/v1/backgrounds/{stored['id']}"
    # Stored once, under its pixels: the same picture in another format is the same background.
    assert (await client.add_background(encoded(picture, "BMP")))["id"] == stored["id"]
    assert [b["id"] for b in await client.backgrounds()].count(stored["id"]) == 1
    assert (await client.get_background(stored["id"]))["id"] == stored["id"]
    async with client.http.get(client.base + stored["links"]["image"]) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(await resp.read())).convert("RGB")), picture)

    kept_sid = (await client.create_session())["id"]
    kept = await frame_of(client, kept_sid)
    await client.delete_session(kept_sid)
    sid = (await client.create_session(background=stored["background"]))["id"]
    shown = await frame_of(client, sid)
    plate = covered(picture, SIZE).astype(int)
    for corner in [(slice(0, 16), slice(0, 16)), (slice(0, 16), slice(SIZE - 16, SIZE))]:
        assert np.abs(shown[corner].astype(int) - plate[corner]).max() <= 3  # the picture, placed as covered
        assert np.abs(kept[corner].astype(int) - plate[corner]).mean() > 20  # (not the photo's own)
    middle = (slice(100, 156), slice(100, 156))  # the face is the person: untouched
    assert np.abs(shown[middle].astype(int) - kept[middle].astype(int)).mean() < 3

    # Deleted: gone from the API, refused for new sessions; the running session keeps its plate.
    await client.delete_background(stored["id"])
    with pytest.raises(NotFound) as missing:
        await client.get_background(stored["id"])
    assert missing.value.code == "background_not_found"
    with pytest.raises(NotFound):
        await client.delete_background(stored["id"])
    assert stored["id"] not in [b["id"] for b in await client.backgrounds()]
    with pytest.raises(BadRequest) as refused:
        await client.create_session(background=stored["background"])
    assert refused.value.code == "bad_background" and "no background image with id" in refused.value.message
    still = await frame_of(client, sid)
    assert np.abs(still[0:16, 0:16].astype(int) - plate[0:16, 0:16]).max() <= 3
    await client.delete_session(sid)


def exif_rotated_jpeg(image: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


async def test_a_photo_is_stored_upright(server: RunningServer, client: FacecastClient) -> None:
    stored = await client.add_background(exif_rotated_jpeg(gradient(64, 48), 6))  # 6: turn 90° clockwise
    assert (stored["width"], stored["height"]) == (48, 64)


@pytest.mark.parametrize(
    ("upload", "status", "code", "words"),
    [
        (b"GIF89a but not really", 400, "bad_background_image", "not an image"),
        (encoded(gradient())[:900], 400, "bad_background_image", "not an image"),  # truncated
        (b"", 400, "empty_upload", "empty"),
        # A small file that claims a huge canvas: refused from its header, before decoding.
        (encoded(np.zeros((5000, 6000), bool)), 413, "payload_too_large", "megapixels"),
    ],
    ids=["garbage", "truncated", "empty", "too-many-pixels"],
)
async def test_what_is_not_a_usable_image_is_refused(
    server: RunningServer, client: FacecastClient, upload: bytes, status: int, code: str, words: str
) -> None:
    before = await client.backgrounds()
    with pytest.raises(BadRequest) as refused:
        await client.add_background(upload)
    assert (refused.value.code, words in refused.value.message) == (code, True)
    assert await client.backgrounds() == before  # nothing stored


async def test_an_upload_over_the_limit_is_refused(server: RunningServer, client: FacecastClient) -> None:
    limit = server.registry.settings.server.max_upload_bytes
    with pytest.raises(BadRequest) as refused:
        await client.add_background(encoded(gradient(8, 8)) + b"\0" * limit)
    assert refused.value.code == "payload_too_large"


@pytest.mark.parametrize(
    "spec",
    ["image:0123456789abcdef", "image:/etc/passwd", "image:../avatars", "image:", "image:ABCDEF0123456789"],
)
async def test_a_session_takes_only_the_id_of_an_upload(
    server: RunningServer, client: FacecastClient, spec: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        await client.create_session(background=spec)
    assert refused.value.code == "bad_background" and "POST /v1/backgrounds" in refused.value.message
    assert (await client.list_sessions()) == []  # nothing half-made


async def test_unknown_ids_are_404s(server: RunningServer, client: FacecastClient) -> None:
    for bid in ("0123456789abcdef", "nope", "x" * 300):
        with pytest.raises(NotFound) as missing:
            await client.get_background(bid)
        assert missing.value.code == "background_not_found"
        with pytest.raises(NotFound):
            await client.delete_background(bid)
