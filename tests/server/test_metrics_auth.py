"""/metrics: it lists session ids, so it needs the API token where one is set (issue 12), and its text
is real Prometheus exposition (prometheus_client), one registry per app."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
from facecast_client import FacecastClient
from prometheus_client.parser import text_string_to_metric_families

from facecast.config import Settings
from facecast.server.metrics import Metrics
from facecast.server.runner import RunningServer, running_server

FAMILIES = {
    "facecast_sessions": "gauge",
    "facecast_uptime_seconds": "gauge",
    "facecast_viewers": "gauge",
    "facecast_stage_seconds": "histogram",
    "facecast_frames_emitted": "counter",
    "facecast_frames_skipped": "counter",
    "facecast_keyframes": "counter",
    "facecast_frames_sent": "counter",
    "facecast_frames_dropped": "counter",
    "facecast_queue_depth": "gauge",
    "facecast_queued_speech_seconds": "gauge",
    "facecast_av_offset_seconds": "gauge",
    "facecast_events": "counter",
}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_metrics_needs_the_api_token_where_one_is_set(settings: Settings) -> None:
    settings.server.api_token = "s3cret"
    async with running_server(settings) as srv:
        for headers in (None, {"Authorization": "Bearer nope"}):
            status, body = await get(f"{srv.url}/metrics", headers)
            assert status == 401, body
            assert body["error"]["code"] == "unauthorized"
        status, text = await get(f"{srv.url}/metrics", {"Authorization": "Bearer s3cret"})
        assert status == 200 and "facecast_sessions" in text
        assert (await get(f"{srv.url}/healthz"))[0] == 200  # health stays open for probes


async def test_metrics_open_on_a_loopback_server_without_token(server: RunningServer) -> None:
    status, text = await get(f"{server.url}/metrics")
    assert status == 200 and "facecast_sessions" in text


async def test_metrics_text_parses_with_every_family_described(
    server: RunningServer, client: FacecastClient
) -> None:
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid)
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        text = await client.call("GET", "/metrics")
    finally:
        await viewer.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name
        assert families[name].documentation, f"{name} has no HELP"
    value = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert value["facecast_sessions"] == 1 and value["facecast_viewers"] == 1
    labels = [s.labels for s in families["facecast_frames_sent"].samples]
    assert {"session": sid, "peer": labels[0]["peer"], "kind": "video"} in labels
    assert any(s.labels.get("session") == sid for s in families["facecast_frames_emitted"].samples)


def test_each_app_has_its_own_registry() -> None:
    """Two servers in one process (tests, embedding) neither collide nor share samples."""
    first, second = Metrics(), Metrics()
    first.stages["render"].observe(0.004)
    nothing = SimpleNamespace(sessions={})

    def render_count(metrics: Metrics) -> float:
        families = text_string_to_metric_families(metrics.render(nothing))  # type: ignore[arg-type]
        stage = next(f for f in families if f.name == "facecast_stage_seconds")
        return next(
            s.value for s in stage.samples if s.name.endswith("_count") and s.labels["stage"] == "render"
        )

    assert (render_count(first), render_count(second)) == (1, 0)
