"""Shared per-session video encoding: one encode per frame for all viewers, keyframes on demand."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import av
import numpy as np
import pytest

from facecast.frames import EngineFrame, OutputFrame, clip_block
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.video_encoder import KEYFRAME_INTERVAL_S, SUPPORTED, SharedVideoEncoder
from facecast.outputs.webrtc import SessionVideoTrack, WebRtcOutput
from facecast.stream.clock import ManualClock
from facecast.stream.engine_runner import to_av_frames
from facecast.stream.events import ErrorEvent
from facecast.stream.session import SessionRuntime

PLI_FLAG = "_RTCRtpSender__force_keyframe"


async def packets(track: SessionVideoTrack, n: int) -> list[av.Packet]:
    got = [await asyncio.wait_for(track.recv(), 5) for _ in range(n)]
    assert all(isinstance(p, av.Packet) for p in got)
    return got  # type: ignore[return-value]


def video_track(session: SessionRuntime) -> SessionVideoTrack:
    """A new viewer's video track on `session`."""
    track = session.add_output(WebRtcOutput(audio=False)).video
    assert track is not None
    return track


def streaming_h264(avatar: Avatar) -> tuple[SessionRuntime, SessionVideoTrack]:
    """A started session and one viewer's video track on its shared H.264 encoder."""
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    track = video_track(session)
    assert track.use_codec("H264")
    session.start()
    return session, track


class Pacer:
    """Viewers that take every packet before the session's (manual) clock moves on: however loaded the
    machine, none falls behind (which would bring keyframes of its own). Time moves one frame at a
    time, only while the viewer being read has nothing queued."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock, self.frame = clock, 0

    async def packets(self, track: SessionVideoTrack, n: int) -> list[av.Packet]:
        got: list[av.Packet] = []
        await asyncio.to_thread(self.clock.wait_idle)
        while len(got) < n:
            take = asyncio.ensure_future(track.recv())
            while not take.done():
                await asyncio.wait({take}, timeout=0.05)
                if not take.done() and len(track.queue) == 0:  # all taken: the next frame is due
                    self.frame += 1
                    self.clock.advance_to(self.clock.due_ns(self.frame))
                    await asyncio.to_thread(self.clock.wait_idle)
            packet = take.result()
            assert isinstance(packet, av.Packet)
            got.append(packet)
        return got


def decode(codec: str, stream: list[av.Packet]) -> list[np.ndarray]:
    dec = av.CodecContext.create("h264" if codec == "H264" else "vp8", "r")
    return [f.to_ndarray(format="rgb24") for p in stream for f in dec.decode(av.Packet(bytes(p)))]


async def test_viewers_share_one_encoder_and_each_starts_at_a_keyframe(avatar: Avatar) -> None:
    clock = ManualClock(30)  # the viewers never fall behind (that would bring keyframes of its own)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    first = video_track(session)
    assert first.use_codec("H264")
    session.start()
    pace = Pacer(clock)
    stream = await pace.packets(first, 10)
    # Frame 0 is a keyframe, and so may be frame 1: the first viewer's own request can land just after
    # frame 0 was encoded. Then none until the next viewer.
    assert stream[0].is_keyframe and not any(p.is_keyframe for p in stream[2:])
    assert [p.pts for p in stream] == [stream[0].pts + 3000 * i for i in range(10)]  # 90 kHz clock
    second = video_track(session)
    assert second.use_codec("H264")  # joins mid-stream: its first packet must be a keyframe
    late = await pace.packets(second, 5)
    assert late[0].is_keyframe
    stream += await pace.packets(first, 5)
    encoder = first.encoder
    assert encoder is not None and second.encoder is encoder
    assert encoder.frames <= session.frames_emitted + 1  # once per frame, not once per viewer
    images = decode("H264", late)
    assert len(images) == 5 and images[-1].shape == (128, 128, 3) and images[-1].std() > 10
    first.stop()
    second.stop()
    assert not session.encoders.active()  # released with its last viewer
    await session.close()


async def test_picture_loss_and_interrupt_resync_at_a_keyframe(avatar: Avatar, speech: np.ndarray) -> None:
    # aiortc keeps a viewer's picture-loss report in this private sender flag (a stand-in sender here;
    # tests/server/test_webrtc.py checks the real one with a real RTCP PLI).
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    track = video_track(session)
    sender = SimpleNamespace()
    setattr(sender, PLI_FLAG, False)
    assert track.use_codec("VP8", sender)  # type: ignore[arg-type]
    session.say(speech, "test")
    session.start()
    stream = await packets(track, 5)
    setattr(sender, PLI_FLAG, True)  # what aiortc does on RTCP PLI / FIR
    after_loss = await packets(track, 3)
    assert after_loss[0].is_keyframe and getattr(sender, PLI_FLAG) is False
    await asyncio.sleep(0.15)  # let frames queue up for this viewer, then interrupt
    generation = session.interrupt()
    resumed = await packets(track, 3)
    assert resumed[0].is_keyframe
    assert track.last_sent is not None and track.last_sent.generation >= generation
    assert len(decode("VP8", stream + after_loss + resumed)) == 11
    track.stop()
    await session.close()


async def test_unsupported_codec_leaves_encoding_to_aiortc(avatar: Avatar) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    track = video_track(session)
    assert not track.use_codec("AV1")
    session.start()
    frame = await asyncio.wait_for(track.recv(), 5)
    assert isinstance(frame, av.VideoFrame) and frame.format.name == "yuv420p"
    track.stop()
    await session.close()


async def test_a_viewer_that_fell_behind_resumes_at_a_keyframe(avatar: Avatar) -> None:
    session, track = streaming_h264(avatar)
    stream = await packets(track, 3)
    await asyncio.sleep(0.3)  # ~9 frames into a 3-frame queue: the oldest are dropped for this viewer
    assert track.queue.dropped > 0
    resumed = await packets(track, 3)
    assert resumed[0].is_keyframe
    assert len(decode("H264", stream + resumed)) == 6
    track.stop()
    await session.close()


def talking_frames(avatar: Avatar, speech: np.ndarray, n: int) -> list[OutputFrame]:
    """n frames of the warp engine speaking, made offline (no session, no clock)."""
    engine = WarpEngine(avatar, fps=30, size=128)
    made: list[EngineFrame] = []
    while len(made) < n:
        engine.push_audio(clip_block(speech, engine.frames_pushed, 30))
        made += engine.pop_frames()
    out = []
    for f in made[:n]:
        assert f.image is not None
        video, sound = to_av_frames(f.index, 30, f.image, f.audio.samples)
        out.append(OutputFrame(f.index, 30, f.image, f.audio.samples, 0, True, video, sound))
    return out


@pytest.mark.parametrize("codec", SUPPORTED)
def test_every_codec_makes_a_keyframe_at_least_every_two_seconds(
    avatar: Avatar, speech: np.ndarray, codec: str
) -> None:
    encoder = SharedVideoEncoder(codec, 128, 30)
    stream = [encoder.encode(f) for f in talking_frames(avatar, speech, 5 * 30)]  # 5 s
    dec = av.CodecContext.create("h264" if codec == "H264" else "vp8", "r")
    keys = [
        k
        for k, p in enumerate(stream)
        if p is not None
        for f in dec.decode(av.Packet(bytes(p)))
        if f.key_frame
    ]
    assert keys[0] == 0 and len(keys) >= 3  # before: x264 every 250 frames, VP8 every 3000 (100 s)
    assert max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= KEYFRAME_INTERVAL_S * 30


async def test_a_failing_encoder_is_rebuilt_and_its_viewers_resume_at_a_keyframe(
    avatar: Avatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(30)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    track = video_track(session)
    assert track.use_codec("H264")
    session.start()
    pace = Pacer(clock)
    listener = session.events.listen()
    await pace.packets(track, 4)  # past the start (frame 0 and the viewer's first are keyframes)
    before = await pace.packets(track, 4)
    encoder = track.encoder
    assert encoder is not None
    real_encode = encoder.encode

    def fail_once(out: OutputFrame) -> av.Packet | None:
        monkeypatch.setattr(encoder, "encode", real_encode)
        raise RuntimeError("the encoder broke")

    monkeypatch.setattr(encoder, "encode", fail_once)
    after = await pace.packets(track, 12)
    event = await asyncio.wait_for(listener.get(), 5)
    track.stop()
    await session.close()
    stream = before + after
    gaps = [i for i in range(1, len(stream)) if stream[i].pts != stream[i - 1].pts + 3000]
    assert len(gaps) == 1  # the one frame the broken encoder left out
    resumed = gaps[0]
    assert stream[resumed].pts == stream[resumed - 1].pts + 6000 and stream[resumed].is_keyframe
    assert not any(p.is_keyframe for p in stream[:resumed])
    assert len(decode("H264", stream[resumed:])) == len(stream) - resumed
    assert isinstance(event, ErrorEvent) and event.code == "encoder_error" and event.session == session.id
    assert event.message == "the H264 video encoder failed and restarts at a keyframe (the encoder broke)"
    assert encoder.failures == 1 and session.failure is None
