"""Issue 12, finding 1: one NaN used to kill a session for good (engine thread dead, state `failed`).

A NaN in a WebSocket PCM chunk, or in an uploaded float WAV, now leaves the session live: it keeps making
frames and the next utterance speaks."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import av
import numpy as np
from facecast_client import FacecastClient, pcm_s16le

from facecast.server.runner import RunningServer
from facecast.stream.session import SessionRuntime

WAIT_S = 30  # a guard against hanging, not a measure
F32_START = {"type": "start", "sample_rate": 16000, "channels": 1, "format": "f32le"}


async def audio_socket(
    server: RunningServer, client: FacecastClient, sid: str
) -> aiohttp.ClientWebSocketResponse:
    """The session's audio WebSocket, authenticated by header (never by a token in the URL)."""
    token = server.registry.settings.server.api_token
    return await client.http.ws_connect(
        f"{server.url}/v1/sessions/{sid}/audio", headers={"Authorization": f"Bearer {token}"}
    )


async def events_until_finished(
    ws: aiohttp.ClientWebSocketResponse, finished: int = 1
) -> list[dict[str, Any]]:
    """Events until `finished` playback_finished; fails on an error event or a closed socket."""
    events: list[dict[str, Any]] = []
    while sum(e["type"] == "playback_finished" for e in events) < finished:
        msg = await asyncio.wait_for(ws.receive(), WAIT_S)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed or failed: {msg}"
        event = json.loads(msg.data)
        assert event["type"] != "error", event
        events.append(event)
    return events


def float_wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


async def upload(client: FacecastClient, sid: str, wav: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", wav, filename="speech.wav", content_type="audio/wav")
    result: dict[str, Any] = await client.call("POST", f"/v1/sessions/{sid}/audio", data=form)
    return result


async def assert_live_and_speaking(
    client: FacecastClient, runtime: SessionRuntime, ws: aiohttp.ClientWebSocketResponse, speech: np.ndarray
) -> None:
    """The session still makes frames, and a following utterance speaks and plays out."""
    frames = runtime.frames_emitted
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes(pcm_s16le(speech[:8000]))
    await ws.send_json({"type": "end"})
    events = await events_until_finished(ws)
    assert [e["type"] for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
    assert not events[-1]["interrupted"]
    assert runtime.frames_emitted > frames
    described = await client.call("GET", f"/v1/sessions/{runtime.id}")
    assert described["state"] == "live" and described["failure"] is None
    assert runtime.runner.failures == 0  # the NaN never reached the engine


async def test_a_nan_in_a_websocket_pcm_chunk_leaves_the_session_live(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    runtime = server.registry.get(sid).runtime
    ws = await audio_socket(server, client, sid)
    try:
        chunk = np.zeros(800, "<f4")  # 3200 bytes: 50 ms of silence holding one NaN
        chunk[400] = np.nan
        await ws.send_json(F32_START)
        await ws.send_bytes(chunk.tobytes())
        await ws.send_json({"type": "end"})
        events = await events_until_finished(ws)
        assert not events[-1]["interrupted"]
        await assert_live_and_speaking(client, runtime, ws, speech)
    finally:
        await ws.close()


async def test_a_nan_in_an_uploaded_float_wav_leaves_the_session_live(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    runtime = server.registry.get(sid).runtime
    ws = await audio_socket(server, client, sid)  # for the session's events
    try:
        samples = speech[:8000].copy()
        samples[[100, 2000, 4000]] = [np.nan, np.inf, -np.inf]
        accepted = await upload(client, sid, float_wav(samples))
        events = await events_until_finished(ws)
        assert events[-1]["utterance"] == accepted["utterance"] and not events[-1]["interrupted"]
        await assert_live_and_speaking(client, runtime, ws, speech)
    finally:
        await ws.close()
