"""WebRTC limits and peer ownership (issue 12): offers capped in size and media sections on every path,
peers capped per session, offers that never connect closed, and a peer deletable only by the
credential that made it (or the API token)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from facecast_client import FacecastClient, Viewer
from facecast_client.ice import restrict_host_candidates, rtc_configuration

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server
from facecast.server.webrtc import MAX_SDP_BYTES, close_unless_connected

SDP = {"Content-Type": "application/sdp"}


async def call(
    server: RunningServer, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any, dict[str, str]]:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, **kw) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, dict(resp.headers)


def assert_error(result: tuple[int, Any, dict[str, str]], status: int, code: str) -> None:
    assert result[0] == status, result[1]
    assert result[1]["error"]["code"] == code and result[1]["error"]["message"]


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    """Client peers that offer; closed at the end whatever the test did with them."""
    made: list[Viewer] = []
    yield made
    for viewer in made:
        await viewer.close()


async def offer(viewers: list[Viewer]) -> str:
    viewer = Viewer()
    viewers.append(viewer)
    return await viewer.offer()


async def many_media_offer(sections: int) -> str:
    """A real aiortc offer with `sections` audio m-lines, under the byte cap."""
    pc = RTCPeerConnection(rtc_configuration([]))
    for _ in range(sections):
        pc.addTransceiver("audio", direction="recvonly")
    restrict_host_candidates(pc, ["127.0.0.1"])
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_a_peer_is_deleted_only_by_its_creator_or_the_api_token(
    settings: Settings, viewers: list[Viewer]
) -> None:
    settings.server.api_token = "admin"
    async with running_server(settings) as srv:
        status, session, _ = await call(srv, "POST", "/v1/sessions", "admin", json={})
        assert status == 201
        sid, own, view = session["id"], session["token"], session["view_token"]
        made = {}
        for name, token in (("own", own), ("view", view)):
            status, _, headers = await call(
                srv, "POST", f"/v1/sessions/{sid}/whep", token, data=await offer(viewers), headers=SDP
            )
            assert status == 201
            made[name] = headers["Location"]
        # Neither session credential can end the other's peer, and cannot tell it exists.
        assert_error(await call(srv, "DELETE", made["own"], view), 404, "peer_not_found")
        assert_error(await call(srv, "DELETE", made["view"], own), 404, "peer_not_found")
        assert len(srv.registry.get(sid).peers) == 2
        assert (await call(srv, "DELETE", made["own"], own))[0] == 200
        assert (await call(srv, "DELETE", made["view"], "admin"))[0] == 200
        assert srv.registry.get(sid).peers == {}


async def test_offers_are_capped_in_bytes_and_media_sections_on_every_path(
    server: RunningServer, client: FacecastClient, viewers: list[Viewer]
) -> None:
    sid = (await client.create_session())["id"]
    base = await offer(viewers)
    padded = base + "a=x-pad:" + "x" * (MAX_SDP_BYTES + 1000) + "\r\n"
    huge = base + ("a=x-pad:" + "x" * 1000 + "\r\n") * 1000  # about 1 MB
    for sdp in (padded, huge):
        result = await call(server, "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": sdp, "type": "offer"})
        assert_error(result, 413, "payload_too_large")
    assert_error(
        await call(server, "POST", f"/v1/sessions/{sid}/whep", data=padded, headers=SDP),
        413,
        "payload_too_large",
    )
    fifty = await many_media_offer(50)
    assert len(fifty.encode()) < MAX_SDP_BYTES  # refused for its sections, not its size
    result = await call(server, "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": fifty, "type": "offer"})
    assert_error(result, 400, "bad_sdp")
    assert "media sections" in result[1]["error"]["message"]
    for kind in ("whep", "whip"):
        result = await call(server, "POST", f"/v1/sessions/{sid}/{kind}", data=fifty, headers=SDP)
        assert_error(result, 400, "bad_sdp")
    assert server.registry.get(sid).peers == {}
    assert (await call(server, "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": base, "type": "offer"}))[
        0
    ] == 200


async def test_peers_per_session_are_capped_with_retry_after(
    settings: Settings, viewers: list[Viewer]
) -> None:
    settings.server.max_peers_per_session = 2
    async with running_server(settings) as srv:
        sid = (await call(srv, "POST", "/v1/sessions", json={}))[1]["id"]
        path = f"/v1/sessions/{sid}/webrtc"
        peers = []
        for _ in range(2):
            status, body, _ = await call(
                srv, "POST", path, json={"sdp": await offer(viewers), "type": "offer"}
            )
            assert status == 200
            peers.append(body["peer"])
        result = await call(srv, "POST", path, json={"sdp": await offer(viewers), "type": "offer"})
        assert_error(result, 429, "too_many_peers")
        assert int(result[2]["Retry-After"]) >= 1
        result = await call(srv, "POST", f"/v1/sessions/{sid}/whep", data=await offer(viewers), headers=SDP)
        assert_error(result, 429, "too_many_peers")  # the same cap on every path
        assert (await call(srv, "DELETE", f"{path}/{peers[0]}"))[0] == 200
        status, _, _ = await call(srv, "POST", path, json={"sdp": await offer(viewers), "type": "offer"})
        assert status == 200  # room again once a peer left


async def test_an_offer_that_never_connects_is_closed(settings: Settings, viewers: list[Viewer]) -> None:
    settings.server.offer_timeout_s = 0.5
    async with running_server(settings) as srv:
        sid = (await call(srv, "POST", "/v1/sessions", json={}))[1]["id"]
        status, answer, _ = await call(
            srv, "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": await offer(viewers), "type": "offer"}
        )
        assert status == 200  # the answer is never applied: the client went away mid-signalling
        for _ in range(100):  # generous: up to 10 s for a 0.5 s timeout
            status, info, _ = await call(srv, "GET", f"/v1/sessions/{sid}")
            if not info["peers"]:
                break
            await asyncio.sleep(0.1)
        assert info["peers"] == [], info["peers"]
        assert answer["peer"] not in srv.registry.get(sid).peers


async def test_a_connected_peer_outlives_the_offer_timeout(
    server: RunningServer, client: FacecastClient
) -> None:
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid)
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        live = server.registry.get(sid)
        (peer,) = live.peers.values()
        assert peer.pc.connectionState == "connected"
        assert peer.offer_timer is None  # stopped (and let go) once connected
        await close_unless_connected(server.registry, live, peer, 0)  # what the timer would have done
        assert peer.id in live.peers
    finally:
        await viewer.close()
