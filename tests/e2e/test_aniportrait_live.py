"""The AniPortrait engine live, end to end on CPU: configs/aniportrait_tiny.yaml with fixture A's tiny weights.

A real server on 127.0.0.1, speech PCM over the WebSocket, frames to a real aiortc viewer, events in
order. The tiny engine on 2 shared cores is slower than real time: the test checks that frames arrive
and events come in order, never a frame rate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from facecast_client import FacecastClient, pcm_s16le

from facecast.config import Settings, load_settings
from facecast.frames import OutputFrame
from facecast.models.audio.decode import decode_audio
from facecast.outputs.queues import QueueOutput
from facecast.server.runner import RunningServer, running_server

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "aniportrait_tiny.yaml"
SLOW_S = 90  # generous: CPU tiny diffusion on shared cores


@pytest.fixture
def tiny_settings(live_home: Path, fixture_a: Path) -> Settings:
    settings = load_settings(TINY_CONFIG)
    settings.home = live_home
    settings.server.ice_host_addresses = ["127.0.0.1"]
    settings.render.weights = str(fixture_a)
    return settings


@pytest.fixture
async def tiny_server(tiny_settings: Settings, one_torch_thread: None) -> AsyncIterator[RunningServer]:
    async with running_server(tiny_settings) as srv:
        yield srv


async def next_event(ws: aiohttp.ClientWebSocketResponse, timeout: float = SLOW_S) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_websocket_speech_streams_through_the_aniportrait_engine(
    tiny_server: RunningServer, fixture_a: Path
) -> None:
    api = FacecastClient(tiny_server.url)
    speech = decode_audio(fixture_a / "audio" / "speech.wav")
    try:
        created = await api.create_session()  # the config's default engine
        assert created["engine"] == "aniportrait"
        sid = created["id"]
        viewer = await api.watch(sid)
        ws = await api.audio_socket(sid)
        try:
            await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=SLOW_S)
            await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
            data = pcm_s16le(speech)
            for i in range(0, len(data), 1280):
                await ws.send_bytes(data[i : i + 1280])
            await ws.send_json({"type": "end"})
            events = [await next_event(ws) for _ in range(3)]
            assert [e["type"] for e in events] == [
                "speaking_started",
                "speaking_stopped",
                "playback_finished",
            ]
            assert (
                events[2]["position"] == round(speech.size / 16000, 3) and events[2]["interrupted"] is False
            )
            await asyncio.sleep(0.3)
        finally:
            await ws.close()
            await viewer.close()
        video = viewer.received.video
        assert len(video) >= 10
        images = [f.to_ndarray(format="rgb24") for _, f in video]
        assert all(img.shape == (64, 64, 3) for img in images)
        assert np.std(np.stack(images).astype(np.float32)) > 1.0  # pictures, not a blank track
        live = tiny_server.registry.get(sid)
        assert live.runtime.runner.failed is None and live.describe()["engine"] == "aniportrait"
        # a second session on the same process shares the renderer loaded for the first
        second = await api.create_session(engine="aniportrait")
        engines = [tiny_server.registry.get(s).runtime.runner.engine for s in (sid, second["id"])]
        assert engines[0].stream.engine is engines[1].stream.engine  # type: ignore[attr-defined]
    finally:
        await api.close()


async def test_interrupt_over_the_websocket_silences_the_aniportrait_session(
    tiny_server: RunningServer, media_dir: Path
) -> None:
    api = FacecastClient(tiny_server.url)
    speech = decode_audio(media_dir / "speech_2.wav")
    try:
        sid = (await api.create_session())["id"]
        runtime = tiny_server.registry.get(sid).runtime
        sub = runtime.add_output(QueueOutput())
        ws = await api.audio_socket(sid)
        await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
        await ws.send_bytes(pcm_s16le(speech))
        await ws.send_json({"type": "end"})
        assert (await next_event(ws))["type"] == "speaking_started"
        await asyncio.sleep(0.3)
        await ws.send_json({"type": "interrupt"})
        stopped, finished = await next_event(ws), await next_event(ws)
        assert stopped["type"] == "speaking_stopped"
        assert finished["type"] == "playback_finished" and finished["interrupted"] is True
        generation = runtime.generation
        after: list[OutputFrame] = []
        while len(after) < 10:
            out = await asyncio.wait_for(sub.get(), SLOW_S)
            if out.generation >= generation:
                after.append(out)
        assert not any(f.speech or np.any(f.audio) for f in after)
        assert [f.index for f in after] == list(range(after[0].index, after[0].index + 10))
        assert runtime.runner.failed is None
        await ws.close()
        runtime.remove_output(sub)
    finally:
        await api.close()


async def test_aniportrait_without_weights_is_a_clear_4xx(
    server: RunningServer, client: FacecastClient
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/sessions", json={"engine": "aniportrait"}) as resp:
            body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "engine_unavailable"
    assert "--weights DIR" in body["error"]["message"]
    assert server.registry.sessions == {}


def test_serve_refuses_to_start_without_usable_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facecast.__main__ import main

    assert main(["serve", "--config", str(TINY_CONFIG), "--port", "0"]) != 0
    assert "pass --weights DIR" in capsys.readouterr().err
    assert main(["serve", "--config", str(TINY_CONFIG), "--weights", str(tmp_path), "--port", "0"]) != 0
    assert "reference_unet.pth is missing" in capsys.readouterr().err
