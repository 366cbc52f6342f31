"""Speech into a session: the WebSocket PCM ingest, /say (espeak-ng), /audio (file upload),
/interrupt, and the session's events as Server-Sent Events.

WebSocket protocol (`/v1/sessions/{sid}/audio`):
  → {"type": "start", "sample_rate": N, "channels": C, "format": "s16le"|"f32le"}  begins an utterance
  → binary PCM frames of any size (whole sample frames)
  → {"type": "end"}        end of the utterance (it plays out, then playback_finished)
  The socket keeps the last start's format: PCM after an end begins a new utterance in it, so a start is
  needed once per connection, or to change the format.
  → {"type": "interrupt"}  drops everything queued and in flight; the next frame out is idle
  ← JSON events: speaking_started, speaking_stopped, playback_finished{position, interrupted}, error
A protocol error sends an `error` event and closes the socket (1003 unsupported, 1007 bad data).
A client that disconnects mid-utterance ends its utterance: what arrived still plays out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from facecast.server.api_avatars import read_multipart_file
from facecast.server.errors import ApiError, read_json
from facecast.server.registry import LiveSession
from facecast.server.state import REGISTRY
from facecast.server.tts import TtsError, speak
from facecast.stream.audio_input import AudioInputError, PcmInput
from facecast.stream.events import ErrorEvent
from facecast.stream.speech_queue import QueueFullError, Utterance

log = logging.getLogger(__name__)

WS_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CLOSE_UNSUPPORTED = 1003
CLOSE_BAD_DATA = 1007


class _WsError(Exception):
    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


class _Ingest:
    """One WebSocket's utterance state."""

    def __init__(self, live: LiveSession) -> None:
        self.live = live
        self.pcm: PcmInput | None = None
        self.format: tuple[int, int, str] | None = None  # the last start's (sample_rate, channels, format)
        self.utterance: Utterance | None = None
        self.interrupted = False  # binary frames after an interrupt (until the next start) are dropped

    def on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            raise _WsError("bad_message", "text messages must be JSON objects", CLOSE_UNSUPPORTED) from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "start":
            self._start(msg)
        elif kind == "end":
            self._end()
        elif kind == "interrupt":
            self._end()
            self.live.runtime.interrupt()
            self.interrupted = True
        else:
            raise _WsError(
                "bad_message", f"unknown message type {kind!r} (start, end, interrupt)", CLOSE_UNSUPPORTED
            )

    def _start(self, msg: dict[str, Any]) -> None:
        self._end()
        rate, channels, fmt = msg.get("sample_rate"), msg.get("channels", 1), msg.get("format", "s16le")
        if not isinstance(rate, int) or not isinstance(channels, int) or not isinstance(fmt, str):
            raise _WsError(
                "bad_start", "start needs integer sample_rate and channels and a format", CLOSE_UNSUPPORTED
            )
        try:
            PcmInput(rate, channels, fmt)  # checks the format before the socket keeps it
        except AudioInputError as exc:
            raise _WsError("unsupported_audio", str(exc), CLOSE_UNSUPPORTED) from None
        self.format = (rate, channels, fmt)
        self._begin()
        self.interrupted = False

    def _begin(self) -> None:
        assert self.format is not None
        self.pcm = PcmInput(*self.format)  # a fresh resampler per utterance
        self.utterance = self.live.runtime.begin_utterance("websocket")

    def on_binary(self, data: bytes) -> None:
        if self.interrupted and self.utterance is None:
            return  # the rest of an interrupted utterance, until the next start
        if self.utterance is None:
            if self.format is None:
                raise _WsError("no_start", "send a start message before PCM data", CLOSE_UNSUPPORTED)
            self._begin()  # PCM after an end: a new utterance in the socket's format
        assert self.pcm is not None and self.utterance is not None
        try:
            audio = self.pcm.push(data)
            self.live.runtime.queue.append(self.utterance, audio)
        except AudioInputError as exc:
            raise _WsError("bad_pcm", str(exc), CLOSE_BAD_DATA) from None
        except QueueFullError as exc:
            raise _WsError("queue_full", str(exc), CLOSE_BAD_DATA) from None

    def _end(self) -> None:
        if self.utterance is not None:
            self.live.runtime.queue.end(self.utterance)
            self.utterance = None


async def audio_ws(request: web.Request) -> web.StreamResponse:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE_BYTES, heartbeat=20)
    await ws.prepare(request)
    ingest = _Ingest(live)
    listener = live.runtime.events.listen()

    async def forward_events() -> None:
        while True:
            event = await listener.get()
            await ws.send_json(event.to_dict())

    forwarder = asyncio.ensure_future(forward_events())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                ingest.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                ingest.on_binary(msg.data)
    except _WsError as exc:
        error = ErrorEvent(code=exc.code, message=exc.message).stamped(live.id, time.time())
        await ws.send_json(error.to_dict())
        await ws.close(code=exc.close_code, message=exc.code.encode())
    except Exception:
        log.exception("websocket ingest failed")
    finally:
        ingest._end()  # a vanished client's utterance plays out what arrived
        live.runtime.events.unlisten(listener)
        forwarder.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def events_sse(request: web.Request) -> web.StreamResponse:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    listener = live.runtime.events.listen()
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(listener.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            data = json.dumps(event.to_dict())
            await response.write(f"event: {event.type}\ndata: {data}\n\n".encode())
    except Exception:  # client gone or session closed (queues.Closed)
        pass
    finally:
        live.runtime.events.unlisten(listener)
    return response


async def say(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    body = await read_json(request)
    text, voice = body.get("text"), body.get("voice")
    if not isinstance(text, str) or (voice is not None and not isinstance(voice, str)):
        raise ApiError(400, "bad_text", 'expected {"text": "...", "voice"?: "en-us"}')
    try:
        audio = await speak(text, voice)
        utt = live.runtime.say(audio, "say")
    except (TtsError, QueueFullError) as exc:
        raise ApiError(400, "bad_text", str(exc)) from None
    return web.json_response({"utterance": utt.id, "duration": round(audio.size / 16000, 3)}, status=202)


async def play_file(request: web.Request) -> web.Response:
    from facecast.models.audio.decode import AudioError, decode_audio

    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    data, _ = await read_multipart_file(request, "file", registry.settings.server.max_upload_bytes)
    try:
        audio = await asyncio.get_running_loop().run_in_executor(None, decode_audio, data)
        utt = live.runtime.say(audio, "file")
    except (AudioError, QueueFullError) as exc:
        raise ApiError(400, "bad_audio", str(exc)) from None
    return web.json_response({"utterance": utt.id, "duration": round(audio.size / 16000, 3)}, status=202)


async def interrupt(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    return web.json_response({"generation": live.runtime.interrupt()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/sessions/{sid}/audio", audio_ws, name="audio_ws")
    app.router.add_post("/v1/sessions/{sid}/audio", play_file)
    app.router.add_get("/v1/sessions/{sid}/events", events_sse, name="events")
    app.router.add_post("/v1/sessions/{sid}/say", say)
    app.router.add_post("/v1/sessions/{sid}/interrupt", interrupt)
