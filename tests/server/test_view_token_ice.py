"""Issue 11: the configured STUN/TURN servers reach every client (session response, the view page's
endpoint, WHEP Link headers); a session's watch-only view token; no token in the access log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack
from facecast_client import FacecastClient, Viewer, audio_subprotocols

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server
from facecast.server.webrtc import client_ice_servers, ice_server_links

ADMIN = "admin-s3cret"
# TURN over TCP to a closed loopback port: refused at once, so the server's own ICE gathering (which
# uses these servers too) does not wait out a STUN/TURN timeout.
ICE: list[dict[str, Any]] = [
    {"urls": "turn:127.0.0.1:9?transport=tcp", "username": "alice", "credential": 'pa"ss'},
    {"urls": ["turns:127.0.0.1:9?transport=tcp"], "username": "bob", "credential": "c2"},
]
EXPECTED_ICE = [
    {"urls": ["turn:127.0.0.1:9?transport=tcp"], "username": "alice", "credential": 'pa"ss'},
    {"urls": ["turns:127.0.0.1:9?transport=tcp"], "username": "bob", "credential": "c2"},
]


async def call(
    server: RunningServer, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers |= kw.pop("headers", {})
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, **kw) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, resp


def refused(status: int, body: object, expected: int) -> bool:
    return (
        status == expected
        and isinstance(body, dict)
        and body["error"]["code"] == {401: "unauthorized", 403: "forbidden"}[expected]
    )


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[RunningServer]:
    settings.server.api_token = ADMIN
    settings.server.ice_servers = ICE
    async with running_server(settings) as srv:
        yield srv


def test_ice_servers_for_browsers_and_whep_links() -> None:
    assert client_ice_servers([{"urls": "stun:stun.example.net"}]) == [{"urls": ["stun:stun.example.net"]}]
    assert client_ice_servers(ICE) == EXPECTED_ICE
    assert ice_server_links(ICE) == [
        '<turn:127.0.0.1:9?transport=tcp>; rel="ice-server"; username="alice"; '
        'credential="pa\\"ss"; credential-type="password"',
        '<turns:127.0.0.1:9?transport=tcp>; rel="ice-server"; username="bob"; credential="c2"; '
        'credential-type="password"',
    ]


async def test_session_response_and_view_endpoint_carry_the_ice_servers(secured: RunningServer) -> None:
    status, session, _ = await call(secured, "POST", "/v1/sessions", ADMIN, json={})
    assert status == 201 and isinstance(session, dict)
    assert session["ice_servers"] == EXPECTED_ICE
    sid, view = session["id"], session["view_token"]
    assert view and view != session["token"] and view != ADMIN
    assert session["links"]["view"] == f"/v1/sessions/{sid}/view?token={view}"
    status, got, _ = await call(secured, "GET", f"/v1/sessions/{sid}", ADMIN)
    assert status == 200 and got["ice_servers"] == EXPECTED_ICE and got["view_token"] == view
    for token in (view, session["token"]):  # what view.js (and WHEP/WHIP clients) fetch before offering
        status, body, _ = await call(secured, "GET", f"/v1/sessions/{sid}/ice_servers", token)
        assert status == 200 and body == {"ice_servers": EXPECTED_ICE}
    assert refused(*(await call(secured, "GET", f"/v1/sessions/{sid}/ice_servers"))[:2], 401)


async def test_view_token_only_watches(secured: RunningServer) -> None:
    _, session, _ = await call(secured, "POST", "/v1/sessions", ADMIN, json={})
    _, other, _ = await call(secured, "POST", "/v1/sessions", ADMIN, json={})
    sid, view = session["id"], session["view_token"]
    base = f"/v1/sessions/{sid}"

    # Everything but watching is refused, in the JSON error envelope.
    assert refused(*(await call(secured, "POST", "/v1/sessions", view, json={}))[:2], 401)
    assert refused(*(await call(secured, "GET", "/v1/sessions", view))[:2], 401)
    assert refused(*(await call(secured, "GET", "/v1/avatars", view))[:2], 401)
    refusals: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", base, {}),  # would reveal the session's own token
        ("DELETE", base, {}),
        ("POST", f"{base}/say", {"json": {"text": "hello"}}),
        ("POST", f"{base}/interrupt", {}),
        ("POST", f"{base}/recording", {"json": {"action": "start"}}),
        ("POST", f"{base}/webrtc", {"json": {"sdp": "v=0", "type": "offer"}}),
        ("POST", f"{base}/whip", {"data": "v=0", "headers": {"Content-Type": "application/sdp"}}),
        ("GET", f"{base}/events", {}),
        ("GET", f"{base}/audio", {}),
    ]
    for method, path, kw in refusals:
        status, body, _ = await call(secured, method, path, view, **kw)
        assert refused(status, body, 403), (method, path, status, body)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as ws_refused:
            await http.ws_connect(f"{secured.url}{base}/audio", protocols=audio_subprotocols(view))
        assert ws_refused.value.status == 403
    other_whep = f"/v1/sessions/{other['id']}/whep"
    sdp_type = {"Content-Type": "application/sdp"}
    assert refused(*(await call(secured, "POST", other_whep, view, data="v=0", headers=sdp_type))[:2], 401)

    # It watches: a WHEP offer (with the ICE servers as Link headers), video arrives, the viewer leaves.
    admin = FacecastClient(secured.url, ADMIN)
    page = await admin.watch(sid)  # the creator's own peer, which the view token must not end
    viewer = Viewer(mic=AudioStreamTrack())  # a viewer that also offers audio: it must not drive the avatar
    try:
        status, answer, resp = await call(
            secured, "POST", f"{base}/whep", view, data=await viewer.offer(), headers=sdp_type
        )
        assert status == 201, answer
        assert resp.headers.getall("Link") == ice_server_links(ICE)
        location = resp.headers["Location"]
        await viewer.accept(str(answer))
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        live = secured.registry.get(sid)
        assert live.peers[location.rsplit("/", 1)[1]].ingest is None
        page_peer = next(p.id for p in live.peers.values() if p.kind == "webrtc")
        status, body, _ = await call(secured, "DELETE", f"{base}/whep/{page_peer}", view)
        assert status == 404 and body["error"]["code"] == "peer_not_found"
        status, body, _ = await call(secured, "DELETE", f"{base}/webrtc/{page_peer}", view)
        assert refused(status, body, 403)
        assert (await call(secured, "DELETE", location, view))[0] == 200
        assert [p.kind for p in live.peers.values()] == ["webrtc"]

        # The API token still does everything; the session's own token cannot read the session.
        assert refused(*(await call(secured, "GET", base, session["token"]))[:2], 403)
        assert (await call(secured, "POST", f"{base}/interrupt", ADMIN))[0] == 200
        assert (await call(secured, "DELETE", base, ADMIN))[0] == 204
    finally:
        await viewer.close()
        await page.close()
        await admin.close()


async def test_access_log_has_no_tokens(secured: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    _, session, _ = await call(secured, "POST", "/v1/sessions", ADMIN, json={})
    sid, view, own = session["id"], session["view_token"], session["token"]
    view_url = f"/v1/sessions/{sid}/view?token={view}"
    status, _, _ = await call(secured, "GET", view_url, headers={"Referer": secured.url + view_url})
    assert status == 200
    assert (await call(secured, "GET", f"/v1/sessions/{sid}/ice_servers?token={view}"))[0] == 200
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{secured.url}/v1/sessions/{sid}/audio", protocols=audio_subprotocols(own)
        )
        await ws.close()
    for _ in range(50):  # each line is written once its response is finished
        lines = [r for r in caplog.records if r.name == "aiohttp.access"]
        if len(lines) >= 4:
            break
        await asyncio.sleep(0.05)
    formatter = logging.Formatter("%(message)s | %(first_request_line)s | %(request_header)s")
    text = "\n".join(formatter.format(r) for r in lines)
    assert f"GET /v1/sessions/{sid}/view " in text and f"/v1/sessions/{sid}/audio" in text, text
    assert f'/v1/sessions/{sid}/view"' in text  # the Referer, without its query
    for secret in (view, own, ADMIN, "token="):
        assert secret not in text, text
