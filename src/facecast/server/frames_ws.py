"""The frames WebSocket (`GET /v1/sessions/{sid}/frames`): the session's frames out, raw, each image
together with exactly its audio (outputs/frame_wire.py), for avatar integrations that hand frames to
another transport (Pipecat, LiveKit Agents) instead of watching over WebRTC.

Query: `image=jpeg` (default; `quality=1..100`, default 85) or `image=rgb24` (no encoding: for a
consumer on the same machine). Authentication as on the audio WebSocket (header or subprotocol).
A consumer slower than the session loses its oldest frames (a backlog of half a second), never the
session's pace; messages from the client are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aiohttp import WSMsgType, web

from facecast.outputs.frame_wire import IMAGE_FORMATS, pack_frame
from facecast.outputs.queues import Closed, QueueOutput
from facecast.server.auth import session_websocket
from facecast.server.errors import ApiError
from facecast.server.open_streams import OPEN_STREAMS
from facecast.server.state import REGISTRY

log = logging.getLogger(__name__)

BACKLOG_S = 0.5
CLOSE_GOING_AWAY = 1001


def _options(request: web.Request) -> tuple[str, int]:
    image = request.query.get("image", "jpeg")
    if image not in IMAGE_FORMATS:
        raise ApiError(
            400, "bad_image_format", f"image must be one of {', '.join(IMAGE_FORMATS)}, not {image!r}"
        )
    quality_text = request.query.get("quality", "85")
    if not quality_text.isdigit() or not 1 <= int(quality_text) <= 100:
        raise ApiError(400, "bad_quality", "quality must be an integer from 1 to 100")
    return image, int(quality_text)


async def frames_ws(request: web.Request) -> web.StreamResponse:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    image_format, quality = _options(request)
    ws = session_websocket(request)
    await ws.prepare(request)
    frames = QueueOutput(maxlen=max(1, round(BACKLOG_S * live.runtime.fps)))
    live.runtime.add_output(frames)
    loop = asyncio.get_running_loop()

    async def send_frames() -> None:
        try:
            while True:
                frame = await frames.get()
                message = await loop.run_in_executor(None, partial(pack_frame, frame, image_format, quality))
                await ws.send_bytes(message)
        except (Closed, ConnectionError):
            pass  # the session closed or the client left
        except Exception:
            log.exception("frames socket failed")

    sender = asyncio.ensure_future(send_frames())

    async def goodbye() -> None:  # the server is shutting down
        sender.cancel()
        await ws.close(code=CLOSE_GOING_AWAY, message=b"server_shutdown")

    try:
        with request.app[OPEN_STREAMS].open(goodbye):
            receiver = asyncio.ensure_future(_drain(ws))
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            receiver.cancel()
    finally:
        sender.cancel()
        live.runtime.remove_output(frames)
        if not ws.closed:
            await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """Reads (and ignores) what the client sends, so its close is seen."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/sessions/{sid}/frames", frames_ws, name="frames_ws")
