"""Issue 12 finding 3: tokens travel in the Authorization header (the audio WebSocket: as a subprotocol),
never in URLs, except a session's watch-only view token on the routes a shared view link opens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from facecast_client import FacecastClient, Viewer, audio_subprotocols

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server

ADMIN = "admin-token-0123456789"


@pytest.fixture
async def secured(settings: Settings, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings.server.api_token = ADMIN
    (tmp_path / "view.html").write_text("<video></video>")
    async with running_server(settings, client_dir=tmp_path) as srv:
        yield srv


@pytest.fixture
async def session(secured: RunningServer) -> AsyncIterator[dict[str, Any]]:
    admin = FacecastClient(secured.url, ADMIN)
    try:
        yield await admin.create_session()
    finally:
        await admin.close()


async def status_of(server: RunningServer, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def ws_handshake(server: RunningServer, path: str, **kw: Any) -> tuple[int, str | None]:
    """(101, negotiated subprotocol) or (refusal status, None)."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(server.url + path, **kw)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None
        protocol = ws.protocol
        await ws.close()
        return 101, protocol


async def test_api_and_session_tokens_in_the_url_are_refused(
    secured: RunningServer, session: dict[str, Any]
) -> None:
    sid, own, view = session["id"], session["token"], session["view_token"]
    status, body = await status_of(secured, "GET", f"/v1/sessions?token={ADMIN}")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await status_of(secured, "GET", f"/v1/sessions/{sid}?token={ADMIN}"))[0] == 401
    assert (await status_of(secured, "GET", f"/v1/sessions/{sid}/events?token={own}"))[0] == 401
    for token in (ADMIN, own, view):
        assert (await ws_handshake(secured, f"/v1/sessions/{sid}/audio?token={token}"))[0] == 401, token
    # On the view link's routes, where a URL token is read, only the view token counts.
    for token in (ADMIN, own):
        status, body = await status_of(secured, "GET", f"/v1/sessions/{sid}/view?token={token}")
        assert status == 401 and "view token" in body["error"]["message"], body
        assert (await status_of(secured, "GET", f"/v1/sessions/{sid}/ice_servers?token={token}"))[0] == 401
    # The same tokens in the header still work.
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert (await status_of(secured, "GET", "/v1/sessions", headers=admin))[0] == 200
    assert (await status_of(secured, "GET", f"/v1/sessions/{sid}/view", headers=admin))[0] == 200


async def test_the_view_token_in_the_url_still_opens_the_view_page_and_whep(
    secured: RunningServer, session: dict[str, Any]
) -> None:
    sid, view = session["id"], session["view_token"]
    link = session["links"]["view"]
    assert link == f"/v1/sessions/{sid}/view?token={view}"
    status, page = await status_of(secured, "GET", link)
    assert status == 200 and "<video>" in page
    assert (await status_of(secured, "GET", f"/v1/sessions/{sid}/ice_servers?token={view}"))[0] == 200
    viewer = Viewer()
    try:
        status, answer = await status_of(
            secured,
            "POST",
            f"/v1/sessions/{sid}/whep?token={view}",
            data=await viewer.offer(),
            headers={"Content-Type": "application/sdp"},
        )
        assert status == 201 and str(answer).startswith("v=0"), answer
    finally:
        await viewer.close()
    # Watch-only still: the view token cannot drive the session, in the URL or in the header.
    bearer = {"Authorization": f"Bearer {view}"}
    assert (await status_of(secured, "POST", f"/v1/sessions/{sid}/interrupt?token={view}"))[0] == 401
    assert (await status_of(secured, "POST", f"/v1/sessions/{sid}/interrupt", headers=bearer))[0] == 403


async def test_the_websocket_takes_its_token_as_a_subprotocol(
    secured: RunningServer, session: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sid, own, view = session["id"], session["token"], session["view_token"]
    path = f"/v1/sessions/{sid}/audio"
    for token in (own, ADMIN):
        assert await ws_handshake(secured, path, protocols=audio_subprotocols(token)) == (101, "facecast")
    assert (await ws_handshake(secured, path, protocols=audio_subprotocols("wrong")))[0] == 401
    assert (await ws_handshake(secured, path, protocols=audio_subprotocols(view)))[0] == 403  # watch only
    assert (await ws_handshake(secured, path))[0] == 401
    # The header still works, and wins over a subprotocol.
    bearer = {"Authorization": f"Bearer {own}"}
    assert await ws_handshake(secured, path, headers=bearer, protocols=audio_subprotocols("x")) == (
        101,
        "facecast",
    )
    # A bearer subprotocol without "facecast" would fail in a browser: refused in words, token unlogged.
    status, _ = await ws_handshake(secured, path, protocols=(f"facecast.bearer.{own}",))
    assert status == 400
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            secured.url + path,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": f"facecast.bearer.{own}",
            },
        ) as resp,
    ):
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_subprotocol"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert own not in logged and ADMIN not in logged, logged


async def test_the_python_client_streams_with_a_session_token(
    secured: RunningServer, session: dict[str, Any]
) -> None:
    """FacecastClient without the API token, with the session's own token as the subprotocol."""
    client = FacecastClient(secured.url)
    try:
        ws = await client.audio_socket(session["id"], token=session["token"])
        assert ws.protocol == "facecast"
        await ws.send_json({"type": "interrupt"})
        await ws.close()
    finally:
        await client.close()
