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
A protocol error sends an `error` event and closes the socket (1003 unsupported: a text message that
is not a JSON object, nested too deep, or of an unknown type; 1007 bad data: PCM that cannot be used;
1009 too big: a text message over 64 KiB). Client mistakes are never logged with a traceback.
A client that disconnects mid-utterance ends its utterance: what arrived still plays out.
Authentication: the `Authorization: Bearer` header, or (browsers cannot set WebSocket headers) the
subprotocol `facecast.bearer.<token>` offered together with `facecast`; the server answers with
`facecast`, never echoing the token. A token in the URL is not accepted here.

Shutdown (SIGTERM): every audio WebSocket gets
  ← {"type": "error", "code": "server_shutdown", "message": ..., "session", "time"}
and a close 1001 (going away); every event stream gets the same event (`event: error`) and ends.
Utterances then end as if the client had left, and recordings are finished, before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from facecast.outputs.queues import Closed, DropOldestQueue
from facecast.server.api_avatars import read_multipart_file
from facecast.server.auth import session_websocket
from facecast.server.errors import ApiError, parse_body
from facecast.server.open_streams import OPEN_STREAMS, SHUTDOWN_CODE, SHUTDOWN_MESSAGE, OpenStreams
from facecast.server.registry import LiveSession
from facecast.server.schemas import SayRequest
from facecast.server.state import REGISTRY
from facecast.server.tts import TtsError, speak
from facecast.stream.audio_input import AudioInputError, PcmInput
from facecast.stream.events import ErrorEvent, Event
from facecast.stream.speech_queue import QueueFullError, Utterance

log = logging.getLogger(__name__)

WS_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
WS_MAX_TEXT_CHARS = 64 * 1024  # control messages are a few dozen bytes; parsing stays cheap
SSE_KEEPALIVE_S = 15.0
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_BAD_DATA = 1007
CLOSE_TOO_BIG = 1009


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
        except RecursionError:  # nested deeper than the parser goes (within the 64 KiB a message may have)
            raise _WsError("bad_message", "the JSON is nested too deeply", CLOSE_UNSUPPORTED) from None
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
    ws = session_websocket(request, max_msg_size=WS_MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    ingest = _Ingest(live)
    listener = live.runtime.events.listen()

    async def forward_events() -> None:
        while True:
            event = await listener.get()
            await ws.send_json(event.to_dict())

    forwarder = asyncio.ensure_future(forward_events())

    async def goodbye() -> None:  # the server is shutting down
        forwarder.cancel()  # nothing after the last word
        await _close_with_error(ws, live, SHUTDOWN_CODE, SHUTDOWN_MESSAGE, CLOSE_GOING_AWAY)

    try:
        with request.app[OPEN_STREAMS].open(goodbye):
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if len(msg.data) > WS_MAX_TEXT_CHARS:
                        limit = f"text messages are limited to {WS_MAX_TEXT_CHARS} characters"
                        raise _WsError("message_too_long", limit, CLOSE_TOO_BIG)
                    ingest.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    ingest.on_binary(msg.data)
    except _WsError as exc:
        forwarder.cancel()
        await _close_with_error(ws, live, exc.code, exc.message, exc.close_code)
    except Exception:
        log.exception("websocket ingest failed")
    finally:
        ingest._end()  # a vanished client's utterance plays out what arrived
        live.runtime.events.unlisten(listener)
        forwarder.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _close_with_error(
    ws: web.WebSocketResponse, live: LiveSession, code: str, message: str, close_code: int
) -> None:
    """An `error` event, then a close with `close_code`; a client already gone is no error."""
    if ws.closed:
        return
    error = ErrorEvent(code=code, message=message).stamped(live.id, time.time())
    try:
        await ws.send_json(error.to_dict())
    except ConnectionError:
        pass  # the close below still ends our side
    await ws.close(code=close_code, message=code.encode())


async def events_sse(request: web.Request) -> web.StreamResponse:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    listener = live.runtime.events.listen()
    shutting_down = False
    finished = asyncio.Event()

    async def goodbye() -> None:  # the server is shutting down
        nonlocal shutting_down
        shutting_down = True
        listener.close()  # the loop below delivers what is queued, then sees Closed
        await finished.wait()

    try:
        with request.app[OPEN_STREAMS].open(goodbye):
            await response.write(b": connected\n\n")
            await _pump_events(response, listener)
            if shutting_down:
                event = ErrorEvent(code=SHUTDOWN_CODE, message=SHUTDOWN_MESSAGE).stamped(live.id, time.time())
                await response.write(_sse(event.to_dict()))
    except ConnectionError:
        pass  # the client left
    finally:
        live.runtime.events.unlisten(listener)
        finished.set()
    return response


async def _pump_events(response: web.StreamResponse, listener: DropOldestQueue[Event]) -> None:
    """Events as SSE until the listener closes (session closed or server shutting down)."""
    while True:
        try:
            event = await asyncio.wait_for(listener.get(), timeout=SSE_KEEPALIVE_S)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        except Closed:
            return
        await response.write(_sse(event.to_dict()))


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


async def say(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    body = await parse_body(request, SayRequest)
    try:
        audio = await speak(body.text, body.voice)
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
        limit = live.runtime.queue.max_queued_s  # longer could never be queued: refused from its header
        audio = await asyncio.get_running_loop().run_in_executor(
            None, lambda: decode_audio(data, max_seconds=limit)
        )
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
    app[OPEN_STREAMS] = OpenStreams()
    # Registered before app.py's own shutdown hook (which closes the sessions), so clients hear why
    # their socket closes while their sessions still exist.
    app.on_shutdown.append(_say_goodbye)


async def _say_goodbye(app: web.Application) -> None:
    await app[OPEN_STREAMS].close_all()
