"""Issue 12 finding 5: SIGTERM while a WebSocket is streaming speech and a recording runs.

The real `facecast serve` process (run_app's own signal handling is what is under test): every audio
WebSocket gets an `error` event with code `server_shutdown` and a close 1001, every event stream the
same event and its end, the recording is finished into a valid MP4, and the process exits 0 within
a few seconds (measured and printed; the bound asserted is loose, for a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from facecast_client import FacecastClient, pcm_s16le

from facecast.bench.loopback import facecast_serve

EXIT_BOUND_S = 10.0  # the target is 3 s; this bound only has to catch the old 27-30 s
CHUNK_S = 0.1


async def stream_speech(ws: aiohttp.ClientWebSocketResponse, speech: np.ndarray) -> None:
    """Real-time PCM until the speech runs out or the server closes the socket."""
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    step = int(16000 * CHUNK_S)
    try:
        for at in range(0, speech.size, step):
            await ws.send_bytes(pcm_s16le(speech[at : at + step]))
            await asyncio.sleep(CHUNK_S)
    except (ConnectionError, RuntimeError):
        return  # closed by the server mid-utterance: what this test is about


async def next_event(ws: aiohttp.ClientWebSocketResponse, timeout: float = 30) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    event: dict[str, Any] = json.loads(msg.data)
    return event


async def test_sigterm_says_goodbye_finishes_the_recording_and_exits(
    tmp_path: Path, speech: np.ndarray
) -> None:
    with facecast_serve(tmp_path / "server") as server:
        client = FacecastClient(server.base_url)
        try:
            sid = (await client.create_session())["id"]
            await client.call("POST", f"/v1/sessions/{sid}/recording", json={"action": "start"})
            sse = await client.http.get(f"{server.base_url}/v1/sessions/{sid}/events")
            assert sse.status == 200
            ws = await client.audio_socket(sid)
            assert ws.protocol == "facecast"
            streaming = asyncio.ensure_future(stream_speech(ws, np.tile(speech, 3)))
            assert (await next_event(ws))["type"] == "speaking_started"
            await asyncio.sleep(1.0)  # a second of speech in the recording

            sent_at = time.monotonic()
            os.kill(server.process.pid, signal.SIGTERM)
            events = []
            while True:
                msg = await ws.receive(timeout=15)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                events.append(json.loads(msg.data))
            got_close_s = time.monotonic() - sent_at
            sse_text = (await asyncio.wait_for(sse.content.read(), 15)).decode()
            await streaming
            code = await asyncio.get_running_loop().run_in_executor(None, server.process.wait, 15)
            exit_s = time.monotonic() - sent_at
        finally:
            await client.close()
        print(f"SIGTERM: close frame after {got_close_s:.2f} s, exit code {code} after {exit_s:.2f} s")
        log = server.log_tail()

    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY, (msg, log)
    assert events and events[-1]["type"] == "error" and events[-1]["code"] == "server_shutdown", events
    assert events[-1]["message"] and events[-1]["session"] == sid
    assert '"code": "server_shutdown"' in sse_text.rsplit("event: error", 1)[-1], sse_text[-500:]
    assert code == 0, log
    assert exit_s < EXIT_BOUND_S, f"exit took {exit_s:.1f} s\n{log}"
    assert "Traceback" not in log, log

    recording = server.home / "recordings" / f"{sid}.mp4"
    with av.open(str(recording)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 15, frames  # over a second at 30 fps was recorded before SIGTERM
