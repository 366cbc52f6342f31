"""API errors as {"error": {"code", "message"}} with a fitting status, for every failure.

Everything a client can send wrong ends here as one sentence in the envelope: typed bodies are
validated at the edge (`parse_body`), path ids are checked before any handler uses them, and an
unexpected exception becomes a 500 envelope whose log line is bounded (a 19 MB id must not write a
19 MB line).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from facecast.server.schemas import ID_PATTERN, MAX_ID_CHARS

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_JSON_BYTES = 128 * 1024  # the largest JSON body is an SDP offer (64 KB)
LOG_CHARS = 300  # longest client-controlled text in one log line
_ID = re.compile(ID_PATTERN)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def clip(text: str, chars: int = 60) -> str:
    """`text` cut to `chars` characters (client-supplied text quoted in messages and logs)."""
    return text if len(text) <= chars else text[:chars] + f"... ({len(text)} characters)"


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"no {what} with id '{clip(ident)}'")


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# Path parameters that name things: ids of sessions, avatars and peers.
_ID_PARAMS = {"sid": "session", "aid": "avatar", "pid": "peer"}


def check_path_ids(request: web.Request) -> None:
    """404 for an id no session, avatar or peer can have (too long, odd characters): before any lookup."""
    for param, what in _ID_PARAMS.items():
        value = request.match_info.get(param)
        if value is not None and (len(value) > MAX_ID_CHARS or not _ID.match(value)):
            raise not_found(what, value)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        check_path_ids(request)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else f"request body too large ({exc.text})"
        if exc.status == 404:
            message = f"no such route: {request.method} {clip(request.path)}"
        return error_response(
            exc.status, code, message, {k: v for k, v in exc.headers.items() if k == "Allow"}
        )
    except Exception as exc:  # a bug: the client gets the envelope, the log one bounded line
        log.error("%s %s failed: %s", request.method, clip(request.path), clip(repr(exc), LOG_CHARS))
        log.debug("traceback", exc_info=True)
        return error_response(500, "internal_error", "the server failed to handle this request")


async def read_json(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object body (at most MAX_JSON_BYTES), or an ApiError saying what is wrong with it."""
    if empty_ok and not request.can_read_body:
        return {}
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "payload_too_large", f"a JSON body may have at most {MAX_JSON_BYTES} bytes")
    raw = bytearray()
    while chunk := await request.content.read(64 * 1024):  # chunked bodies say no length up front
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, "payload_too_large", f"a JSON body may have at most {MAX_JSON_BYTES} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:  # the parser gives up past ~1000 levels; the API's bodies are flat
        raise ApiError(400, "bad_json", "the JSON body is nested too deeply") from None
    except ValueError:
        raise ApiError(400, "bad_json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    return body


async def parse_body(request: web.Request, model: type[ModelT], *, empty_ok: bool = False) -> ModelT:
    """The JSON body as `model`, or a 400 naming the first field that is wrong."""
    body = await read_json(request, empty_ok=empty_ok)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        # Codes name the field (bad_fps, bad_text, ...), as clients matched them before the models.
        code = "unknown_field" if first["type"] == "extra_forbidden" else f"bad_{first['loc'][0]}"
        raise ApiError(400, code, f"{clip(where)}: {clip(first['msg'], 200)}") from None
