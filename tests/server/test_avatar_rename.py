"""POST /v1/avatars with an image already stored renames it: to the upload's file name or the given `name`."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from facecast.server.runner import RunningServer


async def _upload(server: RunningServer, data: bytes, filename: str, name: str | None = None) -> dict:
    form = aiohttp.FormData()
    if name is not None:
        form.add_field("name", name)
    form.add_field("image", data, filename=filename)
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/avatars", data=form) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def _stored_name(server: RunningServer, aid: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/v1/avatars/{aid}") as resp:
        return (await resp.json())["name"]


async def test_a_known_image_takes_the_new_uploads_name(server: RunningServer, media_dir: Path) -> None:
    data = (media_dir / "grace_hopper_512.png").read_bytes()
    first = await _upload(server, data, "old.png")
    assert first["name"] == "old.png"
    try:
        second = await _upload(server, data, "new.png")
        assert second["id"] == first["id"] and second["name"] == "new.png"
        assert await _stored_name(server, first["id"]) == "new.png"
        named = await _upload(server, data, "new.png", name="Grace Hopper")
        assert named["id"] == first["id"] and named["name"] == "Grace Hopper"
        assert await _stored_name(server, first["id"]) == "Grace Hopper"
    finally:
        server.registry.avatars.delete(first["id"])
