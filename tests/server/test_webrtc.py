"""Signalling with real aiortc peers on 127.0.0.1: JSON offer/answer, WHEP, WHIP, bad SDP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.sdp import SessionDescription
from facecast_client import FacecastClient, Viewer
from facecast_client.ice import restrict_host_candidates, rtc_configuration

from facecast.outputs.queues import QueueOutput
from facecast.outputs.video_encoder import KEYFRAME_INTERVAL_S, SharedVideoEncoder
from facecast.server.runner import RunningServer


def candidate_hosts(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def test_offer_answer_viewer_receives_video_and_audio(
    server: RunningServer, client: FacecastClient
) -> None:
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid)
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        await asyncio.sleep(0.5)
        assert candidate_hosts(viewer.pc.remoteDescription.sdp) == {"127.0.0.1"}
        image = viewer.received.video[-1][1].to_ndarray(format="rgb24")
        assert image.shape == (256, 256, 3) and image.std() > 10
        assert viewer.received.audio
        info = await client.call("GET", f"/v1/sessions/{sid}")
        assert info["peers"][0]["kind"] == "webrtc"
    finally:
        await viewer.close()


async def test_whep_two_viewers_and_delete(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    viewers = [Viewer(), Viewer()]
    locations = []
    async with aiohttp.ClientSession() as http:
        for viewer in viewers:
            offer = await viewer.offer()
            async with http.post(
                f"{server.url}/v1/sessions/{sid}/whep",
                data=offer,
                headers={"Content-Type": "application/sdp"},
            ) as resp:
                assert resp.status == 201 and resp.content_type == "application/sdp"
                answer = await resp.text()
                locations.append(resp.headers["Location"])
            assert "a=end-of-candidates" in answer and candidate_hosts(answer) == {"127.0.0.1"}
            await viewer.accept(answer)
        for viewer in viewers:
            await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        async with http.patch(
            server.url + locations[0], data="a=x", headers={"Content-Type": "application/trickle-ice-sdpfrag"}
        ) as resp:
            assert resp.status == 405
        for location in locations:
            async with http.delete(server.url + location) as resp:
                assert resp.status == 200
        async with http.delete(server.url + locations[0]) as resp:
            assert resp.status == 404
    assert server.registry.get(sid).peers == {}
    for viewer in viewers:
        await viewer.close()


async def test_whip_publisher_audio_drives_the_session(
    server: RunningServer, client: FacecastClient, media_dir: Path
) -> None:
    sid = (await client.create_session())["id"]
    runtime = server.registry.get(sid).runtime
    player = MediaPlayer(str(media_dir / "speech_1.wav"))
    pc = RTCPeerConnection(rtc_configuration([]))
    pc.addTransceiver(player.audio, direction="sendonly")
    restrict_host_candidates(pc, ["127.0.0.1"])
    await pc.setLocalDescription(await pc.createOffer())
    sub = runtime.add_output(QueueOutput())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/v1/sessions/{sid}/whip",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            assert resp.status == 201
            await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
        energy = 0.0
        for _ in range(90):  # 3 s
            out = await asyncio.wait_for(sub.get(), timeout=5)
            energy = max(energy, float(np.sqrt(np.mean(out.audio**2))))
        assert energy > 0.01  # the publisher's speech reaches the avatar's audio
    finally:
        runtime.remove_output(sub)
        await pc.close()
        player.audio.stop()


async def test_bad_sdp_and_content_types(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    async with aiohttp.ClientSession() as http:

        async def post(path: str, **kw: object) -> tuple[int, dict]:
            async with http.post(server.url + path, **kw) as resp:  # type: ignore[arg-type]
                return resp.status, await resp.json()

        status, body = await post(f"/v1/sessions/{sid}/webrtc", json={"sdp": "hello", "type": "offer"})
        assert status == 400 and body["error"]["code"] == "bad_sdp"
        broken = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/zz\r\n"
        status, body = await post(f"/v1/sessions/{sid}/webrtc", json={"sdp": broken, "type": "offer"})
        assert status == 400 and body["error"]["code"] == "bad_sdp"
        status, body = await post(f"/v1/sessions/{sid}/webrtc", json={"sdp": broken, "type": "answer"})
        assert status == 400 and body["error"]["code"] == "bad_offer"
        status, body = await post(
            f"/v1/sessions/{sid}/whep", data="v=0", headers={"Content-Type": "text/plain"}
        )
        assert status == 415 and body["error"]["code"] == "unsupported_media_type"
        status, body = await post(
            f"/v1/sessions/{sid}/whep", data=broken, headers={"Content-Type": "application/sdp"}
        )
        assert status == 400 and body["error"]["code"] == "bad_sdp"
        status, body = await post(
            "/v1/sessions/unknown/whep", data=broken, headers={"Content-Type": "application/sdp"}
        )
        assert status == 404 and body["error"]["code"] == "session_not_found"
    assert server.registry.get(sid).peers == {}


def answered_video_codec(sdp: str) -> str:
    section = sdp.split("m=video", 1)[1]
    first_pt = section.split("\n", 1)[0].split()[2]  # " 9 UDP/TLS/RTP/SAVPF <first> ..."
    line = next(ln for ln in section.splitlines() if ln.startswith(f"a=rtpmap:{first_pt} "))
    return line.split()[1].split("/")[0]


async def test_answer_prefers_h264_encoded_once_per_session_and_falls_back_to_vp8(
    server: RunningServer, client: FacecastClient
) -> None:
    sid = (await client.create_session())["id"]
    runtime = server.registry.get(sid).runtime
    viewers = [await client.watch(sid), await client.watch(sid), await client.watch(sid, vp8_only_viewer())]
    try:
        codecs = [answered_video_codec(v.pc.remoteDescription.sdp) for v in viewers]
        assert codecs == ["H264", "H264", "VP8"]
        assert sorted(e.codec for e in runtime.encoders.active()) == [
            "H264",
            "VP8",
        ]  # one encoder per codec, not per viewer
        for viewer in viewers:
            await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        await asyncio.sleep(0.5)
        for viewer in viewers:
            image = viewer.received.video[-1][1].to_ndarray(format="rgb24")
            assert image.shape == (256, 256, 3) and image.std() > 10
        metrics = await client.call("GET", "/metrics")
        assert f'facecast_keyframes_total{{codec="H264",session="{sid}"}}' in metrics  # labels sorted
    finally:
        for viewer in viewers:
            await viewer.close()


def vp8_only_viewer() -> Viewer:
    """A viewer that accepts only VP8."""
    viewer = Viewer()
    video = next(t for t in viewer.pc.getTransceivers() if t.kind == "video")
    video.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    )
    return viewer


async def next_keyframe(encoder: SharedVideoEncoder) -> int:
    """The encoder's frame count at its next keyframe."""
    keyframes = encoder.keyframes
    for _ in range(1000):
        if encoder.keyframes > keyframes:
            return encoder.frames
        await asyncio.sleep(0.01)
    raise AssertionError("no keyframe in 10 s")


async def test_a_viewers_rtcp_picture_loss_report_brings_a_keyframe(
    server: RunningServer, client: FacecastClient
) -> None:
    """End to end through aiortc's real RTCP handling: the viewer's receiver sends a PLI (what a browser does
    when it lost picture data); the server's sender records it, the session's shared encoder makes a keyframe
    long before its periodic one (every KEYFRAME_INTERVAL_S)."""
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid, vp8_only_viewer())
    try:
        await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=10)
        output = next(p.output for p in server.registry.get(sid).peers.values() if p.output is not None)
        assert output.video is not None and output.video.encoder is not None
        encoder = output.video.encoder
        assert encoder.codec == "VP8"
        periodic = await next_keyframe(encoder)  # the next periodic one is a whole interval away
        media = next(
            m for m in SessionDescription.parse(viewer.pc.remoteDescription.sdp).media if m.kind == "video"
        )
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        await receiver._send_rtcp_pli(media.ssrc[0].ssrc)  # the RTCP PSFB PLI packet, over DTLS/SRTP
        asked = await next_keyframe(encoder)
        assert asked - periodic < KEYFRAME_INTERVAL_S * encoder.fps // 2
    finally:
        await viewer.close()
