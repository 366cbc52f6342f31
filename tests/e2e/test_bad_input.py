"""Bad WebSocket input gets an error event and a clean close; other sessions keep streaming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from facecast_client import FacecastClient, pcm_s16le

from facecast.models.audio.decode import decode_audio
from facecast.server.runner import RunningServer


async def expect_error_close(ws: aiohttp.ClientWebSocketResponse, code: str, close_code: int) -> None:
    msg = await asyncio.wait_for(ws.receive(), 5)
    event = json.loads(msg.data)
    assert event["type"] == "error" and event["code"] == code and event["message"]
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == close_code


async def test_odd_pcm_unsupported_rate_and_no_start(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    ws = await client.audio_socket(sid)
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes(b"\x01\x02\x03")
    await expect_error_close(ws, "bad_pcm", 1007)
    ws = await client.audio_socket(sid)
    await ws.send_json({"type": "start", "sample_rate": 12345, "channels": 1, "format": "s16le"})
    await expect_error_close(ws, "unsupported_audio", 1003)
    ws = await client.audio_socket(sid)
    await ws.send_bytes(b"\x00\x00")
    await expect_error_close(ws, "no_start", 1003)
    ws = await client.audio_socket(sid)
    await ws.send_str("not json")
    await expect_error_close(ws, "bad_message", 1003)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/sessions/nope/audio") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "session_not_found"


async def test_client_vanishing_mid_utterance_harms_nobody(
    server: RunningServer, client: FacecastClient, media_dir: Path
) -> None:
    speech = decode_audio(media_dir / "speech_1.wav")
    a = (await client.create_session())["id"]
    b = (await client.create_session())["id"]
    viewer = await client.watch(b)
    await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
    listener = server.registry.get(a).runtime.events.listen()
    ws = await client.audio_socket(a)
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes(pcm_s16le(speech[:16000]))
    await asyncio.sleep(0.2)
    ws._response.connection.transport.abort()  # type: ignore[union-attr]  # vanish: no close frame
    received_before = viewer.counts["video"]
    types = [(await asyncio.wait_for(listener.get(), 10)).type for _ in range(3)]
    assert types == ["speaking_started", "speaking_stopped", "playback_finished"]  # what arrived played out
    await asyncio.sleep(0.5)
    assert viewer.counts["video"] - received_before > 20  # session b kept streaming throughout
    assert server.registry.get(a).runtime.runner.running
    await viewer.close()
