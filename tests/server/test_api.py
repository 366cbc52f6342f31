"""REST API with a real server on 127.0.0.1: avatars, sessions, speech, recording, health, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import av
import pytest
from facecast_client import FacecastClient, audio_subprotocols

from facecast.config import Settings
from facecast.server.app import UnsafeBindError, check_bind
from facecast.server.runner import RunningServer, running_server


async def request(server: RunningServer, method: str, path: str, **kw: object) -> tuple[int, object, dict]:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, **kw) as resp:  # type: ignore[arg-type]
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body, dict(resp.headers)


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait for `condition` (polled): generous, so a loaded machine is slower but never flaky."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def assert_error(status: int, body: object, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and body["error"]["code"] == code and body["error"]["message"]


async def test_health_and_metrics(server: RunningServer, client: FacecastClient) -> None:
    assert (await client.call("GET", "/healthz"))["status"] == "ok"
    session = await client.create_session()
    live = server.registry.get(session["id"])
    await until(lambda: live.runtime.frames_emitted >= 3)  # frames through every stage, however slow
    text = await client.call("GET", "/metrics")
    assert "facecast_sessions 1" in text
    assert 'facecast_stage_seconds_bucket{le="+Inf",stage="render"}' in text  # prometheus_client sorts labels
    assert f'facecast_frames_emitted_total{{session="{session["id"]}"}}' in text
    assert f'facecast_frames_skipped_total{{session="{session["id"]}"}}' in text
    assert 'facecast_stage_seconds_count{stage="encode"}' in text


async def test_avatar_upload_list_get_delete(server: RunningServer, media_dir: Path) -> None:
    form = aiohttp.FormData()
    form.add_field("image", (media_dir / "astronaut_512.png").read_bytes(), filename="astronaut.png")
    status, body, _ = await request(server, "POST", "/v1/avatars", data=form)
    assert status == 201 and isinstance(body, dict)
    aid = body["id"]
    status, listing, _ = await request(server, "GET", "/v1/avatars")
    assert aid in [a["id"] for a in listing["avatars"]]  # type: ignore[index]
    assert (await request(server, "GET", f"/v1/avatars/{aid}"))[0] == 200
    assert (await request(server, "DELETE", f"/v1/avatars/{aid}"))[0] == 204
    assert_error(*(await request(server, "GET", f"/v1/avatars/{aid}"))[:2], 404, "avatar_not_found")


async def test_avatar_bad_inputs(server: RunningServer, settings: Settings) -> None:
    form = aiohttp.FormData()
    form.add_field("image", b"this is text, not a photo", filename="face.jpg")
    assert_error(*(await request(server, "POST", "/v1/avatars", data=form))[:2], 422, "bad_avatar")
    status, body, _ = await request(server, "POST", "/v1/avatars", json={"image": "x"})
    assert_error(status, body, 415, "unsupported_media_type")
    form = aiohttp.FormData()
    form.add_field("image", b"\0" * (settings.server.max_upload_bytes + 10), filename="big.png")
    assert_error(*(await request(server, "POST", "/v1/avatars", data=form))[:2], 413, "payload_too_large")


async def test_session_lifecycle_and_errors(server: RunningServer) -> None:
    status, body, headers = await request(server, "POST", "/v1/sessions", json={"fps": 25})
    assert status == 201 and isinstance(body, dict)
    sid = body["id"]
    assert headers["Location"] == f"/v1/sessions/{sid}" and body["fps"] == 25 and body["token"]
    status, listing, _ = await request(server, "GET", "/v1/sessions")
    assert [s["id"] for s in listing["sessions"]] == [sid]  # type: ignore[index]
    assert (await request(server, "DELETE", f"/v1/sessions/{sid}"))[0] == 204
    assert_error(*(await request(server, "GET", f"/v1/sessions/{sid}"))[:2], 404, "session_not_found")
    assert_error(
        *(await request(server, "POST", "/v1/sessions/nope/interrupt"))[:2], 404, "session_not_found"
    )
    assert_error(
        *(await request(server, "POST", "/v1/sessions", json={"avatar": "abc123"}))[:2],
        404,
        "avatar_not_found",
    )
    assert_error(
        *(await request(server, "POST", "/v1/sessions", json={"engine": "magic"}))[:2],
        400,
        "unsupported_engine",
    )
    assert_error(*(await request(server, "POST", "/v1/sessions", json={"fps": 60}))[:2], 400, "bad_fps")
    assert_error(
        *(await request(server, "POST", "/v1/sessions", data="{"))[:2], 415, "unsupported_media_type"
    )
    status, body, _ = await request(
        server, "POST", "/v1/sessions", data="{", headers={"Content-Type": "application/json"}
    )
    assert_error(status, body, 400, "bad_json")


async def read_sse(resp: aiohttp.ClientResponse, n: int) -> list[dict]:
    events: list[dict] = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
            if len(events) == n:
                return events
    return events


async def test_say_plays_with_events_over_sse(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/v1/sessions/{sid}/events") as sse:
        assert sse.headers["Content-Type"] == "text/event-stream"
        await sse.content.readline()
        said = await client.call("POST", f"/v1/sessions/{sid}/say", json={"text": "Hello there."})
        assert 0.3 < said["duration"] < 3
        events = await asyncio.wait_for(read_sse(sse, 3), timeout=10)
    assert [e["type"] for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
    assert events[2]["position"] == pytest.approx(said["duration"], abs=0.01) and not events[2]["interrupted"]
    status, body, _ = await request(
        server, "POST", f"/v1/sessions/{sid}/say", json={"text": "hi", "voice": "no-such"}
    )
    assert_error(status, body, 400, "bad_text")
    assert_error(
        *(await request(server, "POST", f"/v1/sessions/{sid}/say", json={"text": " "}))[:2], 400, "bad_text"
    )


async def test_audio_file_upload_and_bad_audio(
    server: RunningServer, client: FacecastClient, media_dir: Path
) -> None:
    sid = (await client.create_session())["id"]
    form = aiohttp.FormData()
    form.add_field("file", (media_dir / "speech_2.wav").read_bytes(), filename="speech.wav")
    status, body, _ = await request(server, "POST", f"/v1/sessions/{sid}/audio", data=form)
    assert status == 202 and body["duration"] > 1  # type: ignore[index]
    form = aiohttp.FormData()
    form.add_field("file", b"RIFF....garbage", filename="broken.wav")
    assert_error(
        *(await request(server, "POST", f"/v1/sessions/{sid}/audio", data=form))[:2], 400, "bad_audio"
    )
    assert (await request(server, "POST", f"/v1/sessions/{sid}/interrupt"))[0] == 200


async def test_recording_is_an_mp4_of_the_stream(
    server: RunningServer, client: FacecastClient, tmp_path: Path
) -> None:
    sid = (await client.create_session())["id"]
    path = f"/v1/sessions/{sid}/recording"
    assert (await request(server, "GET", path))[0] == 404
    assert (await request(server, "POST", path, json={"action": "start"}))[0] == 201
    await client.call("POST", f"/v1/sessions/{sid}/say", json={"text": "Recording."})
    recorder = server.registry.get(sid).recorder
    await until(lambda: recorder is not None and recorder.frames > 20)
    status, info, _ = await request(server, "POST", path, json={"action": "stop"})
    assert status == 200 and info["frames"] > 20  # type: ignore[index]
    status, data, headers = await request(server, "GET", path)
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    (tmp_path / "rec.mp4").write_bytes(data)  # type: ignore[arg-type]
    with av.open(str(tmp_path / "rec.mp4")) as container:
        video = container.streams.video[0]
        assert video.codec_context.width == 256
        assert len(container.streams.audio) == 1
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames - info["frames"]) <= 1  # type: ignore[index]
    assert_error(*(await request(server, "POST", path, json={"action": "stop"}))[:2], 409, "not_recording")


async def test_token_auth(settings: Settings) -> None:
    settings.server.api_token = "s3cret"
    async with running_server(settings) as srv:
        assert_error(*(await request(srv, "GET", "/v1/sessions"))[:2], 401, "unauthorized")
        bad = {"Authorization": "Bearer nope"}
        status, body, headers = await request(srv, "GET", "/v1/sessions", headers=bad)
        assert_error(status, body, 401, "unauthorized")
        assert headers["WWW-Authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret"}
        status, session, _ = await request(srv, "POST", "/v1/sessions", json={}, headers=good)
        assert status == 201
        own = {"Authorization": f"Bearer {session['token']}"}  # type: ignore[index]
        assert (await request(srv, "GET", "/v1/sessions", headers=own))[0] == 401  # not the API token
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"{srv.url}/v1/sessions/{session['id']}/audio",  # type: ignore[index]
                protocols=audio_subprotocols(session["token"]),  # type: ignore[index]
            )
            await ws.close()
        assert (await request(srv, "GET", "/healthz"))[0] == 200


def test_refuses_public_bind_without_token() -> None:
    with pytest.raises(UnsafeBindError, match="without an API token"):
        check_bind(Settings(), "0.0.0.0")
    check_bind(Settings(), "127.0.0.1")
    settings = Settings()
    settings.server.api_token = "t"
    check_bind(settings, "0.0.0.0")


async def test_cors_and_static_client(settings: Settings, tmp_path: Path) -> None:
    settings.server.cors_origins = ["http://app.example"]
    (tmp_path / "index.html").write_text("<h1>client</h1>")
    (tmp_path / "view.html").write_text("<video></video>")
    async with running_server(settings, client_dir=tmp_path) as srv:
        status, body, headers = await request(
            srv, "GET", "/v1/sessions", headers={"Origin": "http://app.example"}
        )
        assert headers["Access-Control-Allow-Origin"] == "http://app.example"
        status, body, headers = await request(
            srv, "GET", "/v1/sessions", headers={"Origin": "http://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in headers
        assert (await request(srv, "GET", "/"))[1] == b"<h1>client</h1>"
        sid = (await request(srv, "POST", "/v1/sessions", json={}))[1]["id"]  # type: ignore[index]
        assert (await request(srv, "GET", f"/v1/sessions/{sid}/view"))[1] == b"<video></video>"
