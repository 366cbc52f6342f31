"""Pushing a session live to a real RTMP server (Debian's nginx with its RTMP module, on loopback) and
playing it back with PyAV: codecs, frame rate, lip sync by the project's own measure, the audio/video
start, a dropped server (the push reconnects, the WebRTC viewer never notices), and bad URLs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from facecast_client import FacecastClient, FacecastError

from facecast.bench.lipsync import measure_lipsync
from facecast.bench.loopback import free_port
from facecast.bench.rtmp_server import NginxRtmp, nginx_rtmp_available, pull
from facecast.server.runner import RunningServer

pytestmark = pytest.mark.skipif(nginx_rtmp_available() is not None, reason=str(nginx_rtmp_available()))


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[NginxRtmp]:
    with NginxRtmp(tmp_path / "nginx") as server:
        yield server


async def wait_for_state(client: FacecastClient, sid: str, state: str, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outputs = await client.outputs(sid)
        if outputs and outputs[0]["state"] == state:
            return outputs[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the push never became {state}: {await client.outputs(sid)}")


async def test_a_pushed_session_plays_back_in_sync(
    server: RunningServer,
    client: FacecastClient,
    session: str,
    rtmp: NginxRtmp,
    media_dir: Path,
    tmp_path: Path,
) -> None:
    # The player is waiting before the push starts, so it receives the stream from its first packet.
    loop = asyncio.get_running_loop()
    pulled = loop.run_in_executor(None, pull, rtmp.url(), tmp_path / "pulled.flv", 7.0)
    await asyncio.sleep(0.5)
    push = await client.push(session, rtmp.publish_url)
    assert push["state"] == "live" and push["url"] == f"rtmp://127.0.0.1:{rtmp.port}/live/…"  # no key shown
    await client.play_file(session, media_dir / "speech_1.wav")
    flv = await asyncio.wait_for(pulled, 30)
    listed = await client.outputs(session)  # before the measures below, which hold this (the server's) loop
    assert listed[0]["frames_sent"] > 150 and listed[0]["bitrate_kbps"] > 100

    with av.open(str(flv)) as played:
        video, audio = played.streams.video[0], played.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert (video.codec_context.width, video.codec_context.height) == (256, 256)
        assert audio.codec_context.sample_rate == 48000
        pts = [float(f.time) for f in played.decode(video=0) if f.time is not None]
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    assert len(pts) >= 6 * 30 - 10 and abs(sorted(steps)[len(steps) // 2] - 1 / 30) < 0.002  # 30 fps

    result = measure_lipsync(flv)
    assert result.face_ratio > 0.95
    assert result.best_corr >= 0.7 and result.best_lag is not None and abs(result.best_lag) <= 1, result
    assert abs(result.audio_start_s - result.video_start_s) <= 1 / 30, result  # starts together


async def test_a_dropped_server_is_reconnected_and_viewers_never_notice(
    server: RunningServer, client: FacecastClient, session: str, rtmp: NginxRtmp, tmp_path: Path
) -> None:
    viewer = await client.watch(session)
    events: list[dict[str, object]] = []

    async def collect() -> None:
        async for event in client.events(session):
            if event["type"] == "output":
                events.append(event)

    listener = asyncio.create_task(collect())
    try:
        push = await client.push(session, rtmp.publish_url)
        await asyncio.sleep(1.0)
        rtmp.stop()
        down = await wait_for_state(client, session, "reconnecting", 10)
        assert "closed the connection" in str(down["error"]) or "nothing accepts" in str(down["error"])
        seen = viewer.counts["video"]
        deadline = time.monotonic() + 20
        while viewer.counts["video"] - seen < 60:  # the server stays away; the session and its viewer go on
            assert time.monotonic() < deadline, "the WebRTC viewer stopped receiving while the push was down"
            await asyncio.sleep(0.05)
        assert (await client.outputs(session))[0]["state"] == "reconnecting"  # still away meanwhile
        rtmp.start()
        back = await wait_for_state(client, session, "live", 15)
        assert back["reconnects"] == 1 and "error" not in back
        flv = await asyncio.get_running_loop().run_in_executor(
            None, pull, rtmp.url(), tmp_path / "again.flv", 4.0
        )
        with av.open(str(flv)) as played:  # a player joining now starts at the next keyframe (2 s at most)
            assert sum(1 for _ in played.decode(video=0)) >= 30  # it streams again
        states = [e["state"] for e in events if e["output"] == push["id"]]
        assert states[:1] == ["live"] and "reconnecting" in states and states[-1] == "live", states
    finally:
        listener.cancel()
        await viewer.close()


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("http://127.0.0.1/live/key", "bad_output_url", "use rtmp://, rtmps:// or srt://"),
        ("rtmp://127.0.0.1/key-without-app", "bad_output_url", "application and a stream key"),
        ("rtmp://127.0.0.1:{closed}/live/key", "push_failed", "nothing accepts connections"),
        ("rtmp://127.0.0.1:{rtmp}/live/wrong-key", "push_failed", "refused the stream"),
        ("srt://127.0.0.1:{closed}", "push_failed", "srt"),
    ],
)
async def test_a_push_that_cannot_work_is_refused_and_the_session_goes_on(
    server: RunningServer,
    client: FacecastClient,
    session: str,
    rtmp: NginxRtmp,
    url: str,
    code: str,
    words: str,
) -> None:
    with pytest.raises(FacecastError) as refused:
        await client.push(session, url.format(closed=free_port(), rtmp=rtmp.port))
    assert refused.value.code == code and words in refused.value.message, refused.value
    assert await client.outputs(session) == []  # nothing half-made
    assert (await client.get_session(session))["state"] == "live"
