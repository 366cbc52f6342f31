"""Issue 12 finding 8: any bad text message on the audio WebSocket (not JSON, nested too deep, too long)
gets an `error` event and a close that says why (never 1000), with no traceback in the log, and the
session keeps working for the next socket."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from facecast_client import FacecastClient

from facecast.server.runner import RunningServer
from facecast.server.speech_in import WS_MAX_TEXT_CHARS

CASES = [
    ("[" * 100_000 + "]" * 100_000, "message_too_long", 1009),  # the issue's: 195 KiB deep
    ("[" * 30_000 + "]" * 30_000, "bad_message", 1003),  # under the length cap, still too deep to parse
    ('{"type": "end", "pad": "' + "x" * WS_MAX_TEXT_CHARS + '"}', "message_too_long", 1009),
    ("not json", "bad_message", 1003),
    ('"a string"', "bad_message", 1003),
]


@pytest.mark.parametrize(
    ("text", "code", "close_code"), CASES, ids=["deep", "deep_short", "long", "text", "str"]
)
async def test_bad_text_gets_an_error_event_and_a_telling_close(
    server: RunningServer,
    client: FacecastClient,
    caplog: pytest.LogCaptureFixture,
    text: str,
    code: str,
    close_code: int,
) -> None:
    caplog.set_level(logging.INFO)
    sid = (await client.create_session())["id"]
    ws = await client.audio_socket(sid)
    await ws.send_str(text)
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    event = json.loads(msg.data)
    assert event["type"] == "error" and event["code"] == code and event["message"], event
    assert len(event["message"]) < 200
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == close_code, msg
    assert not [r for r in caplog.records if r.exc_info], "a client's mistake was logged with a traceback"

    ws = await client.audio_socket(sid)  # the session is unharmed
    await ws.send_json({"type": "interrupt"})
    await ws.close()
    assert server.registry.get(sid).runtime.runner.running
