"""A server listening on loopback with no ICE host addresses configured offers 127.0.0.1 alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from facecast_client import FacecastClient, Viewer

from facecast.config import Settings
from facecast.server.ice import host_candidate_addresses
from facecast.server.runner import running_server


def _candidate_addresses(sdp: str) -> list[str]:
    # a=candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE ...
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_listeners_default_to_127_0_0_1(host: str) -> None:
    assert host_candidate_addresses([], host) == ["127.0.0.1"]
    assert host_candidate_addresses(["192.0.2.10"], host) == [
        "192.0.2.10"
    ]  # configured win (TEST-NET-1: never dialled)


def test_other_listeners_keep_aioices_default() -> None:
    assert host_candidate_addresses([], "0.0.0.0") == []


async def test_answer_from_a_loopback_server_has_only_127_0_0_1(live_home: Path) -> None:
    settings = Settings(home=live_home)  # no server.ice_host_addresses
    settings.render.size = 256
    async with running_server(settings, host="127.0.0.1") as srv:
        api = FacecastClient(srv.url)
        viewer = Viewer(host_addresses=["127.0.0.1"])
        try:
            sid = (await api.create_session())["id"]
            answer = await api.call(
                "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": await viewer.offer(), "type": "offer"}
            )
            addresses = _candidate_addresses(answer["sdp"])
            assert addresses and set(addresses) == {"127.0.0.1"}, addresses
        finally:
            await viewer.close()
            await api.close()
