"""Audio as a real aiortc receiver gets it: one 20 ms Opus packet per RTP timestamp, each step 960.

aiortc's receiver decodes every RTP packet into one frame whose pts is that packet's RTP timestamp
(counted from the first), so the received frames show the packets one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import av
import numpy as np
from facecast_client import FacecastClient, Viewer

from facecast.server.runner import RunningServer


async def _speak(client: FacecastClient, sid: str, speech: np.ndarray) -> None:
    ws = await client.audio_socket(sid)
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes((np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes())
    await ws.send_json({"type": "end"})
    await ws.close()


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll until `condition` holds: generous on a loaded machine, since only the outcome is asserted."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.02)


def pts_span(frames: list[tuple[float, av.VideoFrame]]) -> int:
    first, last = frames[0][1].pts, frames[-1][1].pts
    assert first is not None and last is not None
    return last - first


def _check_packets(frames: list[tuple[float, av.AudioFrame]]) -> np.ndarray:
    pts = np.array([f.pts for _, f in frames])
    assert len(pts) >= 50
    steps = np.diff(pts)
    assert set(steps.tolist()) == {960}, f"RTP timestamp steps {sorted(set(steps.tolist()))}"
    assert all(f.samples == 960 and f.sample_rate == 48000 for _, f in frames)
    return np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for _, f in frames])


async def test_webrtc_viewer_gets_20ms_opus_packets_with_exact_timestamps(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid)
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        start = len(viewer.received.audio)
        await _speak(client, sid, speech[: 2 * 16000])
        await _until(lambda: len(viewer.received.audio) >= start + 125)  # 2.5 s of packets
        audio = _check_packets(viewer.received.audio)
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # the speech arrives, not silence
        # The audio received covers the media time the video received covers: 20 ms a packet (50 a
        # second beside 30 frames), none merged or split. Counted in media time, not in arrivals per
        # second of wall time, so a loaded machine cannot move it.
        video_s = (pts_span(viewer.received.video) + 3000) / 90000  # the last frame lasts 1/30 s
        audio_s = len(viewer.received.audio) * 0.020
        assert abs(audio_s - video_s) < 0.2, (audio_s, video_s)
        # The server reports how late its sends left their schedule (what a jitter buffer absorbs).
        peer = (await client.call("GET", f"/v1/sessions/{sid}"))["peers"][0]
        assert set(peer["output"]["audio"]["late_ms"]) == {"p50", "p99", "max"}
        assert 0 <= peer["output"]["audio"]["late_ms"]["p50"] <= peer["output"]["audio"]["late_ms"]["max"]
    finally:
        await viewer.close()


async def test_whep_viewer_gets_the_same_packets(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    viewer = Viewer()
    offer = await viewer.offer()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/v1/sessions/{sid}/whep", data=offer, headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 201
            await viewer.accept(await resp.text())
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        await _until(lambda: len(viewer.received.audio) >= 50)
        _check_packets(viewer.received.audio)
    finally:
        await viewer.close()
