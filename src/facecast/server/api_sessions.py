"""/v1/sessions: create, list, get, delete; recording start/stop/download; the bare view page."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from facecast.models.render.background import BackgroundError, parse_background
from facecast.outputs.recorder import Recorder
from facecast.server.api_backgrounds import ID_RE, BackgroundStore
from facecast.server.errors import ApiError, clip, parse_body
from facecast.server.registry import LiveSession
from facecast.server.schemas import ID_PATTERN, RecordingAction, SessionCreate
from facecast.server.state import METRICS, REGISTRY
from facecast.server.webrtc import client_ice_servers


async def create_session(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    body = await parse_body(request, SessionCreate, empty_ok=True)
    render = registry.settings.render
    engine = body.engine or render.engine
    backgrounds = BackgroundStore.of(registry)
    background = None if body.background is None else live_background(body.background, engine, backgrounds)
    identity = session_identity(request.headers.get(IDENTITY_HEADER))
    live = await registry.create(body.avatar, engine, body.fps or render.fps, background, identity)
    live.runtime.add_output(request.app[METRICS].frame_timings())
    info = session_info(live, registry.settings.server.ice_servers)
    return web.json_response(info, status=201, headers={"Location": f"/v1/sessions/{live.id}"})


IDENTITY_HEADER = "Facecast-Session-Identity"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def session_identity(header: str | None) -> tuple[str, str, str] | None:
    """`ID TOKEN VIEW_TOKEN` chosen by the caller (a cluster's front door recreating a session on another
    worker under the id and tokens its clients hold). Only the API token creates sessions at all."""
    if header is None:
        return None
    parts = header.split()
    if (
        len(parts) != 3
        or not re.fullmatch(ID_PATTERN, parts[0])
        or not all(_TOKEN.fullmatch(t) for t in parts[1:])
    ):
        raise ApiError(400, "bad_identity", f"{IDENTITY_HEADER} must be: ID TOKEN VIEW_TOKEN")
    return parts[0], parts[1], parts[2]


def live_background(spec: str, engine: str, backgrounds: BackgroundStore) -> str:
    """A session's background spec, checked: what a live session can show today, in one sentence if not."""
    kind = spec.partition(":")[0]  # transparent: the video carries the alpha packed (stream/engine_runner.py)
    if kind == "image":  # image:<id> of an upload (POST /v1/backgrounds); never a path to a server file
        bid = spec.partition(":")[2]
        try:
            path = backgrounds.path(bid)
        except KeyError:
            what = f"with id '{bid}'" if ID_RE.fullmatch(bid) else f"named {clip(bid)!r} (image: takes an id)"
            raise ApiError(
                400, "bad_background", f"no background image {what}: upload one with POST /v1/backgrounds"
            ) from None
        if engine != "warp":
            raise ApiError(
                400, "unsupported_background", f"the {engine} engine keeps the photo's own background"
            )
        return f"image:{path}"  # checked and stored as a clean PNG: the engine reads it off the event loop
    try:
        parse_background(spec)
    except BackgroundError as exc:
        raise ApiError(400, "bad_background", str(exc)) from None
    if engine != "warp" and kind != "keep":
        raise ApiError(400, "unsupported_background", f"the {engine} engine keeps the photo's own background")
    return spec


def session_info(live: LiveSession, ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    """A session as its creator (the API token) sees it: state, both tokens, ICE servers, links."""
    return live.describe() | {
        "token": live.runtime.token,  # drives the session: WebSocket, WHIP, events, ...
        "view_token": live.view_token,  # watch only: WHEP and the view page, for shared links
        "ice_servers": client_ice_servers(ice_servers),  # for the client's RTCPeerConnection
        "links": {
            "webrtc": f"/v1/sessions/{live.id}/webrtc",
            "whep": f"/v1/sessions/{live.id}/whep",
            "whip": f"/v1/sessions/{live.id}/whip",
            "audio": f"/v1/sessions/{live.id}/audio",
            "events": f"/v1/sessions/{live.id}/events",
            "frames": f"/v1/sessions/{live.id}/frames",
            "ice_servers": f"/v1/sessions/{live.id}/ice_servers",
            "view": f"/v1/sessions/{live.id}/view?token={live.view_token}",
        },
    }


async def list_sessions(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response({"sessions": [live.describe() for live in registry.sessions.values()]})


async def get_session(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    return web.json_response(session_info(live, registry.settings.server.ice_servers))


async def delete_session(request: web.Request) -> web.Response:
    await request.app[REGISTRY].delete(request.match_info["sid"])
    return web.Response(status=204)


async def recording(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    action = (await parse_body(request, RecordingAction)).action
    loop = asyncio.get_running_loop()
    if action == "start":
        if live.recorder is not None:
            raise ApiError(409, "already_recording", "this session is already recording")
        live.recorder = Recorder(registry.settings.home / "recordings" / f"{live.id}.mp4")
        live.recording_path = None
        live.runtime.add_output(live.recorder)
        return web.json_response({"state": "recording"}, status=201)
    if action == "stop":
        if live.recorder is None:
            raise ApiError(409, "not_recording", "this session is not recording")
        recorder, live.recorder = live.recorder, None
        live.runtime.remove_output(recorder)
        await loop.run_in_executor(None, recorder.finish)
        if recorder.error:
            raise ApiError(500, "recording_failed", f"the recording failed: {recorder.error}")
        live.recording_path = recorder.path
        return web.json_response(
            {
                "state": "ready",
                "frames": recorder.frames,
                "duration": round(recorder.duration_s, 3),
                "bytes": recorder.path.stat().st_size,
                "url": f"/v1/sessions/{live.id}/recording",
            }
        )
    raise AssertionError(action)  # the model allows only start and stop


async def download_recording(request: web.Request) -> web.StreamResponse:
    live = request.app[REGISTRY].get(request.match_info["sid"])
    if live.recorder is not None:
        raise ApiError(409, "still_recording", "stop the recording before downloading it")
    if live.recording_path is None or not live.recording_path.is_file():
        raise ApiError(404, "no_recording", "this session has no recording")
    return web.FileResponse(
        live.recording_path,
        headers={"Content-Type": "video/mp4", "Content-Disposition": f'attachment; filename="{live.id}.mp4"'},
    )


def view_handler(client_dir: Path | None) -> Any:
    async def view(request: web.Request) -> web.StreamResponse:
        request.app[REGISTRY].get(request.match_info["sid"])
        page = client_dir / "view.html" if client_dir else None
        if page is None or not page.is_file():
            raise ApiError(404, "no_view_page", "the view page (client_web/view.html) is not installed")
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    return view


def add_routes(app: web.Application, client_dir: Path | None) -> None:
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_get("/v1/sessions/{sid}", get_session)
    app.router.add_delete("/v1/sessions/{sid}", delete_session)
    app.router.add_post("/v1/sessions/{sid}/recording", recording)
    app.router.add_get("/v1/sessions/{sid}/recording", download_recording)
    app.router.add_get("/v1/sessions/{sid}/view", view_handler(client_dir), name="view")
