"""The OpenAPI 3.1 document of the API (`GET /v1/openapi.json`), generated from the typed bodies of
facecast.server.schemas and the table of operations below.

The table is the API's description; tests/server/test_openapi.py checks that it names exactly the
routes the application serves, so the document cannot drift from the code. (No aiohttp OpenAPI
library fits: the maintained ones are built on marshmallow or on their own routing; pydantic already
writes the JSON Schemas, the paths are this table.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from facecast import __version__
from facecast.server import schemas as s

JSON = "application/json"
SDP = "application/sdp"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    # Who may call it: "api" (the API token), "session" (also the session's token), "view" (also its
    # view token), "open" (nobody needs a token).
    auth: str = "api"
    body: type[BaseModel] | str | None = None  # a JSON model, or a media type ("multipart/form-data", SDP)
    ok: dict[int, type[BaseModel] | str | None] = field(default_factory=lambda: {200: None})
    tag: str = "sessions"


OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "Liveness and failed sessions", "open", ok={200: s.Health}, tag="server"),
    Op("GET", "/metrics", "Prometheus metrics", ok={200: "text/plain"}, tag="server"),
    Op("GET", "/v1/openapi.json", "This document", ok={200: JSON}, tag="server"),
    Op("POST", "/v1/avatars", "Add a portrait (multipart: image, name)", body="multipart/form-data",
       ok={201: s.Avatar}, tag="avatars"),
    Op("GET", "/v1/avatars", "List avatars", ok={200: s.AvatarList}, tag="avatars"),
    Op("GET", "/v1/avatars/{aid}", "One avatar", ok={200: s.Avatar}, tag="avatars"),
    Op("GET", "/v1/avatars/{aid}/image", "The avatar's prepared image", ok={200: "image/png"}, tag="avatars"),
    Op("DELETE", "/v1/avatars/{aid}", "Delete an avatar", ok={204: None}, tag="avatars"),
    Op("POST", "/v1/backgrounds", "Add a background image (multipart: image); sessions take image:<id>",
       body="multipart/form-data", ok={201: s.BackgroundImage}, tag="backgrounds"),
    Op("GET", "/v1/backgrounds", "List background images", ok={200: s.BackgroundList}, tag="backgrounds"),
    Op("GET", "/v1/backgrounds/{bid}", "One background image", ok={200: s.BackgroundImage}, tag="backgrounds"),
    Op("GET", "/v1/backgrounds/{bid}/image", "The stored image", ok={200: "image/png"}, tag="backgrounds"),
    Op("DELETE", "/v1/backgrounds/{bid}", "Delete a background image (running sessions keep theirs)",
       ok={204: None}, tag="backgrounds"),
    Op("POST", "/v1/sessions", "Start a live session", body=s.SessionCreate, ok={201: s.SessionCreated}),
    Op("GET", "/v1/sessions", "List sessions", ok={200: s.SessionList}),
    Op("GET", "/v1/sessions/{sid}", "One session, with its tokens", ok={200: s.SessionCreated}),
    Op("DELETE", "/v1/sessions/{sid}", "End a session", ok={204: None}),
    Op("POST", "/v1/sessions/{sid}/recording", "Start or stop recording", body=s.RecordingAction,
       ok={200: s.RecordingState, 201: s.RecordingState}),
    Op("GET", "/v1/sessions/{sid}/recording", "Download the recording", ok={200: "video/mp4"}),
    Op("POST", "/v1/sessions/{sid}/outputs", "Push the session live to an RTMP(S) or SRT server",
       body=s.PushCreate, ok={201: s.PushInfo}),
    Op("GET", "/v1/sessions/{sid}/outputs", "The session's pushes, with state, bitrate and reconnects",
       ok={200: s.PushList}),
    Op("DELETE", "/v1/sessions/{sid}/outputs/{oid}", "Stop a push", ok={204: None}),
    Op("POST", "/v1/sessions/{sid}/broadcast", "Start or stop broadcasting through Janus (any number of "
       "viewers)", body=s.BroadcastAction, ok={200: s.BroadcastState, 201: s.BroadcastState}),
    Op("GET", "/v1/sessions/{sid}/broadcast", "The session's Janus broadcast", ok={200: s.BroadcastState}),
    Op("GET", "/v1/sessions/{sid}/view", "The bare view page (OBS browser source)", "view",
       ok={200: "text/html"}),
    Op("POST", "/v1/sessions/{sid}/webrtc", "WebRTC offer/answer (JSON)", body=s.Offer, ok={200: s.Answer}),
    Op("DELETE", "/v1/sessions/{sid}/webrtc/{pid}", "Close a WebRTC peer"),
    Op("GET", "/v1/sessions/{sid}/ice_servers", "STUN/TURN servers for a viewer", "view",
       ok={200: s.IceServers}),
    Op("POST", "/v1/sessions/{sid}/whep", "WHEP: watch (SDP offer in, answer out)", "view", body=SDP,
       ok={201: SDP}),
    Op("DELETE", "/v1/sessions/{sid}/whep/{pid}", "WHEP: stop watching", "view"),
    Op("PATCH", "/v1/sessions/{sid}/whep/{pid}", "WHEP trickle ICE (not supported: 405)", "view",
       ok={405: None}),
    Op("POST", "/v1/sessions/{sid}/whip", "WHIP: publish a microphone", "session", body=SDP, ok={201: SDP}),
    Op("DELETE", "/v1/sessions/{sid}/whip/{pid}", "WHIP: stop publishing", "session"),
    Op("PATCH", "/v1/sessions/{sid}/whip/{pid}", "WHIP trickle ICE (not supported: 405)", "session",
       ok={405: None}),
    Op("GET", "/v1/sessions/{sid}/audio", "WebSocket: PCM speech in, events out", "session",
       ok={101: None}),
    Op("POST", "/v1/sessions/{sid}/audio", "Play an audio file (multipart: file)", body="multipart/form-data",
       ok={202: s.Accepted}),
    Op("GET", "/v1/sessions/{sid}/frames", "WebSocket: frames out, each image with its audio "
       "(?image=jpeg|rgb24, quality)", "session", ok={101: None}),
    Op("GET", "/v1/sessions/{sid}/events", "Server-Sent Events of the session", "session",
       ok={200: "text/event-stream"}),
    Op("POST", "/v1/sessions/{sid}/say", "Speak text (espeak-ng)", body=s.SayRequest, ok={202: s.Accepted}),
    Op("POST", "/v1/sessions/{sid}/interrupt", "Drop all queued speech", ok={200: s.Interrupted}),
)  # fmt: skip

# Served only with FACECAST_TEST_HOOKS=1 (fault injection for the soak and fault tests).
TEST_HOOKS: tuple[Op, ...] = (
    Op("POST", "/v1/sessions/{sid}/faults", "Test hook: inject a fault", body=s.FaultRequest,
       ok={202: s.FaultInjected}),
)  # fmt: skip

# Served by a cluster's front door (facecast serve --cluster): server/front_door.py.
CLUSTER_OPS: tuple[Op, ...] = (
    Op(
        "GET",
        "/v1/cluster",
        "The engine workers: state, node, resources, sessions",
        ok={200: JSON},
        tag="cluster",
    ),
    Op("GET", "/v1/cluster/workers/{name}", "One engine worker", ok={200: JSON}, tag="cluster"),
)

_ID_PARAM = {"type": "string", "pattern": s.ID_PATTERN, "maxLength": s.MAX_ID_CHARS}
_MULTIPART_FIELDS = {
    "/v1/avatars": {"image": {"type": "string", "contentMediaType": "image/*"},
                    "name": {"type": "string", "maxLength": s.MAX_NAME_CHARS}},
    "/v1/sessions/{sid}/audio": {"file": {"type": "string", "contentMediaType": "audio/*"}},
    "/v1/backgrounds": {"image": {"type": "string", "contentMediaType": "image/*"}},
}  # fmt: skip
_REQUIRED_PART = {
    "/v1/avatars": ["image"],
    "/v1/sessions/{sid}/audio": ["file"],
    "/v1/backgrounds": ["image"],
}


def document(test_hooks: bool = False, cluster: bool = False) -> dict[str, Any]:
    """The OpenAPI document of the operations served (with the test hooks when they are on, and the
    cluster's own routes at a cluster's front door)."""
    ops = OPERATIONS + (TEST_HOOKS if test_hooks else ()) + (CLUSTER_OPS if cluster else ())
    models: set[type[BaseModel]] = {s.ErrorBody}
    for op in ops:
        models.update(m for m in (op.body, *op.ok.values()) if isinstance(m, type))
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "facecast", "version": __version__, "description": "Live talking-head server API."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {str(code): _content(kind) for code, kind in op.ok.items()}
        | {"default": {"description": "an error", "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorBody")}}}}},
    }  # fmt: skip
    if op.auth == "open":
        out["security"] = []
    params = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    if params:
        out["parameters"] = [{"name": p, "in": "path", "required": True, "schema": _ID_PARAM} for p in params]
    if isinstance(op.body, type):
        out["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
        }
    elif op.body == "multipart/form-data":
        schema = {
            "type": "object",
            "properties": _MULTIPART_FIELDS[op.path],
            "required": _REQUIRED_PART[op.path],
        }
        out["requestBody"] = {"required": True, "content": {op.body: {"schema": schema}}}
    elif op.body == SDP:
        out["requestBody"] = {
            "required": True,
            "content": {SDP: {"schema": {"type": "string", "maxLength": s.MAX_SDP_BYTES}}},
        }
    return out  # fmt: skip


def _content(kind: type[BaseModel] | str | None) -> dict[str, Any]:
    if kind is None:
        return {"description": "no body"}
    if isinstance(kind, str):
        return {"description": kind, "content": {kind: {}}}
    return {
        "description": kind.__name__,
        "content": {JSON: {"schema": {"$ref": REF.format(model=kind.__name__)}}},
    }
