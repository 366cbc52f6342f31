"""WebSocket audio: a socket keeps its last start's format, so PCM after an end begins the next utterance."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
from facecast_client import FacecastClient, pcm_s16le

from facecast.server.runner import RunningServer


async def _events_until(
    ws: aiohttp.ClientWebSocketResponse, finished: int, timeout: float = 20
) -> list[dict[str, Any]]:
    """Events until `finished` playback_finished events; fails on an error event or a close."""
    events: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while [e["type"] for e in events].count("playback_finished") < finished:
        msg = await asyncio.wait_for(ws.receive(), deadline - loop.time())
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed or failed: {msg}"
        event = json.loads(msg.data)
        assert event["type"] != "error", event
        events.append(event)
    return events


async def test_pcm_after_end_is_a_new_utterance_in_the_same_format(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    ws = await client.audio_socket(sid)
    try:
        one, two = pcm_s16le(speech[:8000]), pcm_s16le(speech[8000:16000])  # two half-second utterances
        await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
        await ws.send_bytes(one)
        await ws.send_json({"type": "end"})
        await ws.send_bytes(two)  # no second start
        await ws.send_json({"type": "end"})
        types = [e["type"] for e in await _events_until(ws, finished=2)]
        assert types.count("speaking_started") == 2
        assert not ws.closed
    finally:
        await ws.close()


async def test_pcm_after_an_interrupt_is_dropped_until_a_start(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    queue = server.registry.get(sid).runtime.queue
    ws = await client.audio_socket(sid)
    try:
        await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
        await ws.send_bytes(pcm_s16le(speech[:8000]))
        await ws.send_json({"type": "interrupt"})
        await ws.send_bytes(pcm_s16le(speech[8000:40000]))  # the interrupted stream's tail (2 s)
        await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
        await ws.send_bytes(pcm_s16le(speech[8000:40000]))
        await ws.send_json({"type": "end"})
        # By the media time events report, not by what a queue holds after a sleep: the first utterance
        # was cut short, the dropped tail never played, and the restarted one played its 2 s in full.
        events = await _events_until(ws, finished=2)
        finished = [e for e in events if e["type"] == "playback_finished"]
        assert finished[0]["interrupted"] and finished[0]["position"] <= 0.5, finished
        assert not finished[1]["interrupted"] and finished[1]["position"] == 2.0, finished
        assert len({e["utterance"] for e in events}) == 2, events
        assert queue.queued_seconds() == 0 and not ws.closed  # nothing (the tail) waits behind it
    finally:
        await ws.close()
