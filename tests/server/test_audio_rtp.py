"""Audio as a real aiortc receiver gets it: one 20 ms Opus packet per RTP timestamp, each step 960.

aiortc's receiver decodes every RTP packet into one frame whose pts is that packet's RTP timestamp
(counted from the first), so the received frames show the packets one by one.
"""

from __future__ import annotations

import asyncio

import aiohttp
import av
import numpy as np

from facecast.server.client import FacecastClient, Viewer
from facecast.server.runner import RunningServer


async def _speak(client: FacecastClient, sid: str, speech: np.ndarray) -> None:
    ws = await client.audio_socket(sid)
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes((np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes())
    await ws.send_json({"type": "end"})
    await ws.close()


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
        await _speak(client, sid, speech[: 2 * 16000])
        await asyncio.sleep(2.5)
        audio = _check_packets(viewer.received.audio)
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # the speech arrives, not silence
        # 50 packets a second beside 30 video frames: one packet per 20 ms, none merged or split.
        ratio = len(viewer.received.audio) / len(viewer.received.video)
        assert 1.5 * 0.9 < ratio < 1.5 * 1.1
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
        await asyncio.sleep(1.5)
        _check_packets(viewer.received.audio)
    finally:
        await viewer.close()
