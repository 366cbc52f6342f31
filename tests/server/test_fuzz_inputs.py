"""Hypothesis on the three inputs a client controls byte by byte: PCM ingest, SDP offers and multipart
uploads. Each must end in usable audio or a one-sentence 4xx in the JSON envelope, never a 5xx or a
dead session. Bounded for the default suite; FACECAST_FUZZ_EXAMPLES raises the case count."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import AsyncExitStack

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server
from facecast.stream.audio_input import SUPPORTED_RATES_HZ, AudioInputError, PcmInput

EXAMPLES = int(os.environ.get("FACECAST_FUZZ_EXAMPLES", "40"))
BOUNDED = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip

SPECIALS = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, 1.0, -1.0, 5e-324]


@st.composite
def pcm_chunks(draw: st.DrawFn) -> tuple[int, int, str, list[bytes]]:
    """A format and a few chunks: random bytes, or floats salted with NaN/inf/huge values, odd lengths too."""
    rate = draw(st.sampled_from(SUPPORTED_RATES_HZ))
    channels = draw(st.sampled_from([1, 2]))
    fmt = draw(st.sampled_from(["s16le", "f32le"]))
    chunks = []
    for _ in range(draw(st.integers(1, 4))):
        if fmt == "f32le" and draw(st.booleans()):
            values = draw(st.lists(st.sampled_from(SPECIALS) | st.floats(width=32), max_size=600))
            chunks.append(np.asarray(values, dtype="<f4").tobytes())
        else:
            chunks.append(draw(st.binary(max_size=2400)))
    return rate, channels, fmt, chunks


@given(pcm_chunks())
@BOUNDED
def test_pcm_ingest_gives_finite_audio_or_one_clear_error(case: tuple[int, int, str, list[bytes]]) -> None:
    rate, channels, fmt, chunks = case
    pcm = PcmInput(rate, channels, fmt)
    for chunk in chunks:
        try:
            audio = pcm.push(chunk)
        except AudioInputError as exc:
            assert "whole number" in str(exc)  # the only refusal: a chunk that splits a sample frame
            continue
        assert audio.dtype == np.float32 and np.isfinite(audio).all()
        assert np.abs(audio).max(initial=0.0) <= 1.0


@pytest.fixture(scope="module")
def fuzz_loop(live_home: object) -> Iterator[tuple[asyncio.AbstractEventLoop, RunningServer, str, str]]:
    """One server, one session and one real browser-like offer for all the examples (one event loop)."""
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    settings_ = Settings(home=live_home)  # type: ignore[arg-type]
    settings_.server.ice_host_addresses = ["127.0.0.1"]
    settings_.render.size = 128
    server = loop.run_until_complete(stack.enter_async_context(running_server(settings_)))
    created = loop.run_until_complete(_call(server, "POST", "/v1/sessions", json={}))
    offer = loop.run_until_complete(_real_offer())
    yield loop, server, str(created[1]["id"]), offer
    loop.run_until_complete(stack.aclose())
    loop.close()


async def _real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _call(server: RunningServer, method: str, path: str, **kw: object) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, **kw) as resp:  # type: ignore[arg-type]
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        return resp.status, await resp.json()


def _answered_or_refused(reply: tuple[int, dict[str, object]], ok: int) -> None:
    status, body = reply
    assert status == ok or 400 <= status < 500, (status, body)
    if status != ok:
        error = body["error"]
        assert isinstance(error, dict) and error["code"] and 0 < len(str(error["message"])) <= 400


@st.composite
def mangled_offers(draw: st.DrawFn, offer: str) -> str:
    """A real offer with lines dropped, repeated, cut or garbled."""
    lines = offer.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "cut", "garble", "insert"]))
        if action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif action == "garble":
            lines[i] = draw(st.text(max_size=80))
        else:
            lines.insert(i, draw(st.sampled_from(["m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 H264/90000",
                                                 "a=fingerprint:sha-256 00", "c=IN IP4 0.0.0.0", "m=", "a="])))  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def test_mangled_sdp_offers_are_answered_or_refused(
    fuzz_loop: tuple[asyncio.AbstractEventLoop, RunningServer, str, str],
) -> None:
    loop, server, sid, offer = fuzz_loop

    @given(mangled_offers(offer), st.sampled_from(["webrtc", "whep"]))
    @BOUNDED
    def run(sdp: str, route: str) -> None:
        async def post() -> tuple[int, dict[str, object]]:
            if route == "webrtc":
                return await _call(
                    server, "POST", f"/v1/sessions/{sid}/webrtc", json={"sdp": sdp, "type": "offer"}
                )
            async with aiohttp.ClientSession() as http:
                headers = {"Content-Type": "application/sdp"}
                async with http.post(
                    f"{server.url}/v1/sessions/{sid}/whep", data=sdp.encode(), headers=headers
                ) as resp:
                    if resp.status == 201:  # answered: close the viewer again
                        await http.delete(server.url + resp.headers["Location"])
                        return 201, {}
                    return resp.status, await resp.json()

        status, body = loop.run_until_complete(post())
        if route == "webrtc" and status == 200:  # answered: close the peer again
            live = server.registry.get(sid)
            loop.run_until_complete(server.registry.close_peer(live, live.peers[str(body["peer"])]))
        _answered_or_refused((status, body), 200 if route == "webrtc" else 201)

    run()
    assert server.registry.get(sid).runtime.failure is None


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A multipart body and Content-Type: random boundaries, headers, parts and bytes."""
    boundary = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=75))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["image", "file", "name", ""]) | st.text(max_size=10))
        header = draw(st.sampled_from([f'form-data; name="{name}"', f'form-data; name="{name}"; filename="x"',
                                       "form-data", "", draw(st.text(max_size=30))]))  # fmt: skip
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {header}\r\n\r\n".encode() + draw(st.binary(max_size=300))
        )
    body = b"\r\n".join(parts) + draw(st.sampled_from([f"\r\n--{boundary}--\r\n".encode(), b"", b"--"]))
    declared = draw(st.sampled_from([boundary, boundary[:-1], "other", ""]))
    return body, f"multipart/form-data; boundary={declared}" if declared else "multipart/form-data"


@pytest.mark.filterwarnings(
    "ignore::aiohttp.multipart.BadContentDispositionHeader"
)  # the garbage is the point
def test_malformed_multipart_uploads_are_refused_in_the_envelope(
    fuzz_loop: tuple[asyncio.AbstractEventLoop, RunningServer, str, str],
) -> None:
    loop, server, sid, _ = fuzz_loop

    @given(multipart_bodies(), st.sampled_from(["/v1/avatars", f"/v1/sessions/{sid}/audio"]))
    @BOUNDED
    def run(upload: tuple[bytes, str], path: str) -> None:
        body, content_type = upload
        reply = loop.run_until_complete(
            _call(server, "POST", path, data=body, headers={"Content-Type": content_type})
        )
        _answered_or_refused(reply, 201 if path == "/v1/avatars" else 202)

    run()
    assert server.registry.get(sid).runtime.failure is None
