"""Typed errors: one exception class per kind of failure, carrying the server's error code.

The server answers every error as {"error": {"code", "message"}}; `FacecastError.code` is that code
(or a client-side one: "unreachable", "server_gone", "bad_audio").
"""

from __future__ import annotations


class FacecastError(Exception):
    """Any failure talking to a facecast server."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{message} ({code})" if status is None else f"{message} ({status} {code})")
        self.code = code
        self.message = message
        self.status = status


class Unreachable(FacecastError):
    """No server answered at the URL (wrong address, nothing listening, not facecast)."""


class BadRequest(FacecastError):
    """The server refused the request's content (400, 413, 415, 422)."""


class Unauthorized(FacecastError):
    """A missing or refused token (401, 403)."""


class NotFound(FacecastError):
    """No such avatar, session or resource (404)."""


class Conflict(FacecastError):
    """The resource is not in a state for this (409)."""


class Busy(FacecastError):
    """The server is full or late (429, 503); `retry_after` says when to try again, in seconds."""

    def __init__(self, code: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(code, message, status)
        self.retry_after = retry_after


class ServerError(FacecastError):
    """The server failed (5xx)."""


class SessionEnded(FacecastError):
    """A session's stream ended: the server went away, closed the session, or reported an error."""


def error_for_status(status: int, code: str, message: str, retry_after: float | None = None) -> FacecastError:
    if status in (401, 403):
        return Unauthorized(code, message, status)
    if status == 404:
        return NotFound(code, message, status)
    if status == 409:
        return Conflict(code, message, status)
    if status in (429, 503):
        return Busy(code, message, status, retry_after)
    if status >= 500:
        return ServerError(code, message, status)
    return BadRequest(code, message, status)
