"""Issue 12's findings at the API's edge, each against a real server on 127.0.0.1: every error in the JSON
envelope with a fitting status, limits checked before work, bounded log lines, admission by capacity."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from facecast.config import Settings
from facecast.server.admission import default_max_sessions, overloaded
from facecast.server.runner import RunningServer, running_server

LONG_ID = "a" * 300


async def call(
    server: RunningServer, method: str, path: str, **kw: object
) -> tuple[int, dict[str, object], dict[str, str]]:
    """(status, JSON body, headers); fails the test if the body is not JSON."""
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, **kw) as resp:  # type: ignore[arg-type]
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        return resp.status, await resp.json(), dict(resp.headers)


def envelope(reply: tuple[int, dict[str, object], dict[str, str]], status: int, code: str) -> None:
    got, body, _ = reply
    error = body.get("error")
    assert got == status and isinstance(error, dict), (got, body)
    assert error["code"] == code and isinstance(error["message"], str) and 0 < len(error["message"]) < 300


@pytest.fixture
def long_log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The log lines over 400 characters written during the test (there must be none)."""
    caplog.set_level(logging.DEBUG)
    found: list[str] = []
    yield found
    found += [line for r in caplog.records for line in r.getMessage().splitlines() if len(line) > 400]


async def test_deep_json_and_long_ids_get_the_envelope(server: RunningServer) -> None:
    deep = "[" * 60_000 + "]" * 60_000  # within the size limit, far past any parser stack
    headers = {"Content-Type": "application/json"}
    envelope(await call(server, "POST", "/v1/sessions", data=deep, headers=headers), 400, "bad_json")
    envelope(await call(server, "POST", "/v1/sessions", json={"avatar": LONG_ID}), 400, "bad_avatar")
    envelope(await call(server, "GET", f"/v1/avatars/{LONG_ID}/image"), 404, "avatar_not_found")
    envelope(await call(server, "DELETE", f"/v1/avatars/{LONG_ID}"), 404, "avatar_not_found")
    envelope(await call(server, "GET", f"/v1/sessions/{LONG_ID}"), 404, "session_not_found")
    envelope(await call(server, "GET", "/v1/avatars/..%2F..%2Fetc"), 404, "avatar_not_found")


async def test_bodies_are_typed_with_limits(server: RunningServer) -> None:
    envelope(await call(server, "POST", "/v1/sessions", json={"fps": 60}), 400, "bad_fps")
    envelope(await call(server, "POST", "/v1/sessions", json={"fsp": 30}), 400, "unknown_field")
    envelope(await call(server, "POST", "/v1/sessions", json={"engine": "x" * 100}), 400, "bad_engine")
    envelope(await call(server, "POST", "/v1/sessions", json=[1, 2]), 400, "bad_json")
    big = {"avatar": "a" * (200 * 1024)}  # a 19 MB id once wrote a 19 MB traceback line
    envelope(await call(server, "POST", "/v1/sessions", json=big), 413, "payload_too_large")


async def test_unknown_routes_and_methods_get_the_envelope(server: RunningServer) -> None:
    envelope(await call(server, "GET", "/v1/nothing/here"), 404, "not_found")
    status, _, headers = reply = await call(server, "PUT", "/v1/sessions")
    envelope(reply, 405, "method_not_allowed")
    assert "POST" in headers["Allow"]


async def test_a_malformed_multipart_body_is_a_400(server: RunningServer) -> None:
    body = b"--other\r\nContent-Disposition: form-data; name=image\r\n\r\nxx\r\n--other--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=expected"}
    envelope(await call(server, "POST", "/v1/avatars", data=body, headers=headers), 400, "bad_multipart")
    headers = {"Content-Type": "multipart/form-data"}  # no boundary at all
    envelope(await call(server, "POST", "/v1/avatars", data=body, headers=headers), 400, "bad_multipart")


async def test_an_unexpected_failure_is_a_500_envelope_with_one_short_log_line(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, long_log_lines: list[str]
) -> None:
    def broken() -> list[dict[str, object]]:
        raise RuntimeError("x" * 1_000_000)

    monkeypatch.setattr(server.registry.avatars, "list", broken)
    envelope(await call(server, "GET", "/v1/avatars"), 500, "internal_error")
    await call(server, "POST", "/v1/sessions", json={"avatar": "b" * 100_000})
    assert long_log_lines == []


async def test_the_session_limit_answers_429_with_retry_after(settings: Settings) -> None:
    settings.server.max_sessions = 1
    async with running_server(settings) as server:
        assert (await call(server, "POST", "/v1/sessions", json={}))[0] == 201
        reply = await call(server, "POST", "/v1/sessions", json={})
        envelope(reply, 429, "too_many_sessions")
        assert int(reply[2]["Retry-After"]) > 0


async def test_late_sessions_refuse_a_new_one_before_viewers_see_repeats(server: RunningServer) -> None:
    status, created, _ = await call(server, "POST", "/v1/sessions", json={})
    assert status == 201
    live = server.registry.get(str(created["id"]))
    live.runtime.latencies_s["emit_lateness"].extend([0.2] * 600)  # as an overloaded worker records it
    reply = await call(server, "POST", "/v1/sessions", json={})
    envelope(reply, 429, "server_busy")
    assert int(reply[2]["Retry-After"]) > 0
    live.runtime.latencies_s["emit_lateness"].extend([0.0] * 600)  # caught up: admitted again
    assert (await call(server, "POST", "/v1/sessions", json={}))[0] == 201


def test_the_default_limit_follows_cores_frame_size_and_the_process_ceiling() -> None:
    assert default_max_sessions(512, 30, cores=2) == 4  # measured: 4 hold 30 fps on 2 cores, 6 collapse
    assert default_max_sessions(512, 30, cores=1) == 2
    assert default_max_sessions(512, 30, cores=32) == 4  # one process: the GIL, not the cores
    assert default_max_sessions(1024, 30, cores=2) == 1
    assert default_max_sessions(384, 25, cores=2) > default_max_sessions(384, 30, cores=2) > 4
    assert default_max_sessions(128, 30, cores=2) == 16  # capped: small frames have fixed costs
    assert overloaded([[0.0] * 60, [0.05] * 60], fps=30)
    assert not overloaded([[0.0] * 60, [0.05] * 10 + [0.0] * 50], fps=30)
    assert not overloaded([[0.2] * 5], fps=30)  # a new session's first late frames are no evidence


def test_aniportrait_without_weights_is_refused_before_torch_loads() -> None:
    code = (
        "import sys\n"
        "from facecast.config import RenderSettings\n"
        "from facecast.engine import EngineError, create_engine\n"
        "try:\n"
        "    create_engine('aniportrait', None, 30, RenderSettings())\n"
        "except EngineError as exc:\n"
        "    print(exc.code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["engine_unavailable", "False"]


async def test_openapi_document_is_served_and_describes_every_route(server: RunningServer) -> None:
    from facecast.server.openapi import OPERATIONS

    status, doc, _ = await call(server, "GET", "/v1/openapi.json")
    assert status == 200 and str(doc["openapi"]).startswith("3.1")
    served = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and route.resource.canonical.startswith(("/v1", "/healthz", "/metrics"))
    }
    described = {(op.method, op.path) for op in OPERATIONS}
    assert served == described
    paths = doc["paths"]
    assert isinstance(paths, dict) and paths["/v1/sessions"]["post"]["requestBody"]
