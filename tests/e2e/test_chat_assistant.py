"""A chat assistant pushes speech PCM over the WebSocket while a Python aiortc client watches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from facecast_client import FacecastClient, pcm_s16le

from facecast.models.audio.decode import decode_audio
from facecast.outputs.queues import QueueOutput
from facecast.server.runner import RunningServer


async def next_event(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def push_speech(ws: aiohttp.ClientWebSocketResponse, audio: np.ndarray, rate: int = 16000) -> None:
    await ws.send_json({"type": "start", "sample_rate": rate, "channels": 1, "format": "s16le"})
    data = pcm_s16le(audio)
    for i in range(0, len(data), 1280):  # 40 ms chunks, faster than real time like a TTS stream
        await ws.send_bytes(data[i : i + 1280])


async def test_assistant_speech_reaches_viewer_with_events_in_order(
    server: RunningServer, client: FacecastClient, media_dir: Path
) -> None:
    speech = decode_audio(media_dir / "speech_1.wav")[: 16000 * 3]
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid)
    ws = await client.audio_socket(sid)
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        await push_speech(ws, speech)
        await ws.send_json({"type": "end"})
        events = [await next_event(ws) for _ in range(3)]
        assert [e["type"] for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
        assert events[2]["position"] == round(speech.size / 16000, 3) and events[2]["interrupted"] is False
        await asyncio.sleep(0.5)
    finally:
        await ws.close()
        await viewer.close()
    video, audio = viewer.received.video, viewer.received.audio
    span = video[-1][0] - video[0][0]
    assert len(video) / span > 20  # ~30 fps, loose on a shared 2-core machine
    images = [f.to_ndarray(format="rgb24") for _, f in video]
    assert all(img.shape == (256, 256, 3) for img in images)
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for _, f in audio]).astype(np.float32)
    assert np.sqrt(np.mean(pcm**2)) > 300  # the speech came through (s16 units)


async def test_websocket_interrupt_stops_speech_at_once(
    server: RunningServer, client: FacecastClient, media_dir: Path
) -> None:
    speech = decode_audio(media_dir / "speech_2.wav")
    sid = (await client.create_session())["id"]
    runtime = server.registry.get(sid).runtime
    ws = await client.audio_socket(sid)
    sub = runtime.add_output(QueueOutput())
    await push_speech(ws, speech)
    await ws.send_json({"type": "end"})
    assert (await next_event(ws))["type"] == "speaking_started"
    await asyncio.sleep(0.5)
    await ws.send_json({"type": "interrupt"})
    stopped, finished = await next_event(ws), await next_event(ws)
    assert stopped["type"] == "speaking_stopped"
    assert finished["type"] == "playback_finished" and finished["interrupted"] is True
    assert 0.3 < finished["position"] < speech.size / 16000
    generation = runtime.generation
    after = []
    while len(after) < 15:
        out = await asyncio.wait_for(sub.get(), 5)
        if out.generation >= generation:
            after.append(out)
    assert not any(f.speech or np.any(f.audio) for f in after)
    await ws.close()
    runtime.remove_output(sub)
