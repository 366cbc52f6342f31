"""/v1/sessions/{id}/outputs: push a session live to RTMP(S)/SRT servers (outputs/push.py), list, stop.

Creating a push waits for its first connection, so a wrong address or stream key is answered in the
error envelope, in one sentence, and leaves nothing behind; later drops are retried by the push itself
and reported as `output` events on the session's event streams. Only the API token may create one:
the server connects wherever the URL points.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from facecast.outputs.push import PushOutput
from facecast.outputs.push_link import CONNECT_TIMEOUT_S, PushError
from facecast.server.errors import ApiError, not_found, parse_body
from facecast.server.registry import LiveSession
from facecast.server.schemas import PushCreate
from facecast.server.state import REGISTRY
from facecast.stream.events import OutputChanged

MAX_PUSHES = 4  # per session: each encodes its own audio and holds a connection
FIRST_CONNECT_S = 2 * CONNECT_TIMEOUT_S + 2  # the TCP probe, then the RTMP handshake and publish


def _announce(live: LiveSession, loop: asyncio.AbstractEventLoop) -> Callable[[PushOutput], None]:
    """on_change for a push of `live`: its state as an `output` event (called from the push's thread)."""

    def changed(push: PushOutput) -> None:
        event = OutputChanged(
            output=push.id, kind=push.kind, state=push.link_state, message=push.error
        ).stamped(live.id, time.time())
        if not loop.is_closed():
            loop.call_soon_threadsafe(live.runtime.events.publish, event)

    return changed


async def create_push(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    body = await parse_body(request, PushCreate)
    if live.runtime.failure is not None or live.runtime.closed:
        raise ApiError(409, "session_ended", "the session has ended; nothing to push")
    if sum(p.link_state not in ("stopped", "failed") for p in live.pushes.values()) >= MAX_PUSHES:
        raise ApiError(409, "too_many_outputs", f"a session pushes to at most {MAX_PUSHES} servers at once")
    loop = asyncio.get_running_loop()
    try:
        push = PushOutput(body.url, on_change=_announce(live, loop))
    except PushError as exc:
        raise ApiError(400, "bad_output_url", str(exc)) from None
    live.runtime.add_output(push)
    try:
        await asyncio.wait_for(asyncio.wrap_future(push.connected), FIRST_CONNECT_S)
    except PushError as exc:
        live.runtime.remove_output(push)
        raise ApiError(502, "push_failed", str(exc)) from None
    except TimeoutError:
        live.runtime.remove_output(push)
        raise ApiError(
            504, "push_timeout", f"the push server at {push.target.where} did not accept the stream "
            f"within {FIRST_CONNECT_S:g} s",
        ) from None  # fmt: skip
    live.pushes[push.id] = push
    return web.json_response(
        push.stats(), status=201, headers={"Location": f"/v1/sessions/{live.id}/outputs/{push.id}"}
    )


async def list_pushes(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    return web.json_response({"outputs": [p.stats() for p in live.pushes.values()]})


async def delete_push(request: web.Request) -> web.Response:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    push = live.pushes.pop(request.match_info["oid"], None)
    if push is None:
        raise not_found("output", request.match_info["oid"])
    live.runtime.remove_output(push)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/sessions/{sid}/outputs", create_push)
    app.router.add_get("/v1/sessions/{sid}/outputs", list_pushes)
    app.router.add_delete("/v1/sessions/{sid}/outputs/{oid}", delete_push)
