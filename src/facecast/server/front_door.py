"""The API front door of a cluster (`facecast serve --cluster ...`): the same API as a single process, with
every session on an engine worker (server/worker.py) chosen by load (server/cluster.py).

Here: creating, listing and ending sessions, the cluster's own routes (/v1/cluster, /healthz, /metrics of
every worker), avatars and background images (stored here, installed on a worker when a session there
needs them). Everything else about a session (its WebSockets, events, say/audio/interrupt, recording,
WebRTC/WHEP/WHIP offers, pushes...) is relayed to its worker (server/proxy.py) under the very routes and
route names of the single-process server, so authentication and clients work unchanged.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from facecast.server.api_sessions import IDENTITY_HEADER
from facecast.server.cluster import Cluster, PlacedSession, Worker
from facecast.server.errors import ApiError, not_found, parse_body
from facecast.server.proxy import Relay
from facecast.server.schemas import SessionCreate
from facecast.server.state import REGISTRY

CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster", Cluster)
RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)
SESSION_PREFIX = "/v1/sessions/{sid}"


def add_routes(
    app: web.Application, cluster: Cluster, session_routes: Callable[[web.Application], None]
) -> None:
    """The front door's routes; `session_routes` registers the single-process server's session routes,
    whose paths and names are taken over here with the relay as their handler."""
    relay = Relay(cluster)
    app[CLUSTER], app[RELAY] = cluster, relay

    async def recreate(session: PlacedSession) -> None:
        await _place(app, session.request, session)

    cluster.recreate = recreate
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/cluster", cluster_info)
    app.router.add_get("/v1/cluster/workers/{name}", worker_info)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_get("/v1/sessions", list_sessions)
    session = app.router.add_resource(SESSION_PREFIX)
    session.add_route("GET", get_session)
    session.add_route("DELETE", delete_session)
    template = web.Application()
    session_routes(template)
    for resource in template.router.resources():
        path = resource.canonical
        if not path.startswith(SESSION_PREFIX + "/"):
            continue
        relayed = app.router.add_resource(path, name=resource.name)
        for route in resource:
            relayed.add_route(route.method, relay.__call__)

    async def start(app: web.Application) -> None:
        await cluster.start()

    async def stop(app: web.Application) -> None:
        await relay.close()
        await cluster.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


async def create_session(request: web.Request) -> web.Response:
    body = await parse_body(request, SessionCreate, empty_ok=True)
    avatar = await asyncio.get_running_loop().run_in_executor(
        None, _avatar, request.app[REGISTRY].avatars, body.avatar
    )
    payload = body.model_dump(exclude_none=True) | {"avatar": avatar.id}
    status, data, headers = await _place(request.app, payload)
    if status >= 400:
        return web.json_response(data, status=status, headers=headers)
    return web.json_response(data, status=201, headers={"Location": f"/v1/sessions/{data['id']}"})


async def _place(
    app: web.Application, payload: dict[str, Any], again: PlacedSession | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Creates the session `payload` describes on the worker that should take it; `again`: a session of a
    dead worker, created anew under its id and tokens (raises what stops it). The worker's reply."""
    cluster, relay = app[CLUSTER], app[RELAY]
    worker = cluster.choose(payload["avatar"])
    cluster.reserve(worker)
    try:
        await _install(app, worker, payload["avatar"], payload.get("background"))
        headers = {"Authorization": f"Bearer {cluster.secret}"}
        if again is not None:
            headers[IDENTITY_HEADER] = f"{again.id} {again.token} {again.view_token}"
        try:
            async with relay.http.post(worker.url + "/v1/sessions", json=payload, headers=headers) as reply:
                data = await reply.json()
                if reply.status >= 400:
                    if again is not None:
                        raise RuntimeError(data.get("error", {}).get("message", f"HTTP {reply.status}"))
                    return reply.status, data, _retry_after(reply.headers)
        except aiohttp.ClientError:
            raise ApiError(
                502, "worker_unreachable", f"the engine worker {worker.name} did not answer; try again"
            ) from None
        cluster.placed(worker, data, payload)
    finally:
        cluster.release(worker)
    data["worker"] = worker.name
    return 201, data, {}


def _avatar(store: Any, ref: str | None) -> Any:
    if not ref:
        return store.default()
    try:
        return store.get(ref)
    except KeyError:
        raise not_found("avatar", ref) from None


async def _install(app: web.Application, worker: Worker, avatar_id: str, background: str | None) -> None:
    """What the session needs on its worker: the prepared avatar, an uploaded background image."""
    if avatar_id not in worker.load.get("avatars", []):
        folder = app[REGISTRY].avatars.root / avatar_id
        files = await asyncio.get_running_loop().run_in_executor(None, _files, folder)
        await worker.actor.install_avatar.remote(avatar_id, files)
        worker.load.setdefault("avatars", []).append(avatar_id)
    if background and background.startswith("image:"):
        from facecast.server.api_backgrounds import BackgroundStore

        store = BackgroundStore.of(app[REGISTRY])
        try:
            path = store.path(background.partition(":")[2])
        except KeyError:
            return  # the worker refuses it in its own words
        await worker.actor.install_background.remote(path.stem, path.read_bytes())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _retry_after(headers: Any) -> dict[str, str]:
    return {"Retry-After": headers["Retry-After"]} if "Retry-After" in headers else {}


async def list_sessions(request: web.Request) -> web.Response:
    cluster, relay = request.app[CLUSTER], request.app[RELAY]
    headers = {"Authorization": f"Bearer {cluster.secret}"}

    async def of(worker: Worker) -> list[dict[str, Any]]:
        try:
            async with relay.http.get(worker.url + "/v1/sessions", headers=headers) as reply:
                listed: list[dict[str, Any]] = (await reply.json())["sessions"]
                return [s | {"worker": worker.name} for s in listed]
        except Exception:  # an unreachable worker lists nothing; its sessions are listed below as failed
            return []

    up = [w for w in cluster.workers.values() if w.state in ("up", "unreachable")]
    sessions = [s for listed in await asyncio.gather(*(of(w) for w in up)) for s in listed]
    seen = {s["id"] for s in sessions}
    sessions += [
        _failed(p.id, p.worker.name, p.failure) for p in cluster.sessions.values() if p.id not in seen
    ]
    return web.json_response({"sessions": sessions})


def _failed(sid: str, worker: str, failure: str | None) -> dict[str, Any]:
    return {
        "id": sid,
        "worker": worker,
        "state": "failed",
        "failure": failure or "its engine worker is unreachable",
    }


async def get_session(request: web.Request) -> web.StreamResponse:
    """The worker's view of the session, with the worker's name; a failed one from the front door's record."""
    session = request.app[CLUSTER].session(request.match_info["sid"])
    try:
        if session.failure is None:
            response = await request.app[RELAY].fetch_json(request, session)
            if isinstance(response, dict):
                return web.json_response(response | {"worker": session.worker.name})
            return response
    except ApiError as exc:
        if exc.code != "session_failed":
            raise
    return web.json_response(_failed(session.id, session.worker.name, session.failure))


async def delete_session(request: web.Request) -> web.StreamResponse:
    cluster = request.app[CLUSTER]
    session = cluster.session(request.match_info["sid"])
    if session.failure is not None:
        cluster.forget(session.id)
        return web.Response(status=204)
    response = await request.app[RELAY](request)
    if response.status in (204, 404):
        cluster.forget(session.id)
    return response


async def cluster_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[CLUSTER].describe())


async def worker_info(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    worker = request.app[CLUSTER].workers.get(name)
    if worker is None:
        raise ApiError(404, "worker_not_found", f"no engine worker named '{name[:64]}' in this cluster")
    return web.json_response(worker.describe())


async def healthz(request: web.Request) -> web.Response:
    """ok while every worker is up and no session failed; the workers' states."""
    cluster = request.app[CLUSTER]
    workers = {w.name: w.state for w in cluster.workers.values()}
    failed = sum(s.failure is not None for s in cluster.sessions.values())
    healthy = all(state == "up" for state in workers.values()) and not failed and workers
    return web.json_response(
        {
            "status": "ok" if healthy else "degraded",
            "sessions": len(cluster.sessions),
            "failed": failed,
            "max_sessions": sum(
                int(w.load.get("max_sessions", 0)) for w in cluster.workers.values() if w.state == "up"
            ),
            "workers": workers,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Every worker's metrics, each sample labelled with its worker."""
    from facecast.server.metrics import CONTENT_TYPE

    cluster = request.app[CLUSTER]
    up = [w for w in cluster.workers.values() if w.state == "up"]
    texts = await asyncio.gather(
        *(asyncio.wait_for(w.actor.metrics.remote(), 5) for w in up), return_exceptions=True
    )
    lines: list[str] = []
    seen_meta: set[str] = set()
    for worker, text in zip(up, texts, strict=True):
        if isinstance(text, BaseException):
            continue
        for line in text.splitlines():
            if line.startswith("#"):
                if line not in seen_meta:
                    seen_meta.add(line)
                    lines.append(line)
            elif line:
                lines.append(_labelled(line, worker.name))
    lines += [
        "# HELP facecast_cluster_workers Engine workers by state.",
        "# TYPE facecast_cluster_workers gauge",
    ]
    for state in ("up", "unreachable", "down", "starting"):
        count = sum(w.state == state for w in cluster.workers.values())
        lines.append(f'facecast_cluster_workers{{state="{state}"}} {count}')
    return web.Response(body=("\n".join(lines) + "\n").encode(), headers={"Content-Type": CONTENT_TYPE})


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(\s.*)$")


def _labelled(line: str, worker: str) -> str:
    match = _SAMPLE.match(line)
    if match is None:
        return line
    name, labels, rest = match.groups()
    inner = labels[1:-1] if labels else ""
    joined = f'worker="{worker}"' + (f",{inner}" if inner else "")
    return f"{name}{{{joined}}}{rest}"
