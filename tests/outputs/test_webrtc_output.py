"""A viewer's WebRTC output: A/V timestamps at the aiortc tracks, the same media instant, the same send time."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np

from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.base import OutputState
from facecast.outputs.webrtc import WebRtcOutput
from facecast.stream.session import SessionRuntime


async def test_tracks_stamp_one_clock_and_leave_together(avatar: Avatar, speech: np.ndarray) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    viewer = session.add_output(WebRtcOutput())
    video, audio = viewer.video, viewer.audio
    assert video is not None and audio is not None and viewer.state is OutputState.LIVE
    session.say(speech[:16000], "test")
    session.start()
    offsets = []
    for _ in range(45):
        v, a = await asyncio.wait_for(asyncio.gather(video.recv(), audio.recv()), 5)
        assert (
            v.time_base == Fraction(1, 90000) and a.time_base == Fraction(1, 16000) and a.sample_rate == 16000
        )
        assert abs(float(v.pts * v.time_base) - float(a.pts * a.time_base)) < 0.001  # same media instant
        assert a.samples in (533, 534)
        offsets.append(viewer.av_offset_s())
    stats = viewer.stats()
    assert stats["video"]["sent"] == stats["audio"]["sent"] == 45
    await session.close()
    assert viewer.state is OutputState.STOPPED and video.readyState == "ended"
    assert max(abs(o) for o in offsets if o is not None) < 0.02


async def test_stale_speech_after_interrupt_is_never_sent(avatar: Avatar, speech: np.ndarray) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    viewer = session.add_output(WebRtcOutput())
    video, audio = viewer.video, viewer.audio
    assert video is not None and audio is not None
    session.say(speech, "test")
    session.start()
    for _ in range(10):
        await asyncio.gather(video.recv(), audio.recv())
    for _ in range(500):  # let frames queue up in the viewer's queues, then interrupt
        if len(audio.queue) >= 3:
            break
        await asyncio.sleep(0.01)
    session.interrupt()
    for _ in range(10):
        a = await asyncio.wait_for(audio.recv(), 5)
        assert not a.to_ndarray().any()
    session.remove_output(viewer)
    assert video.readyState == "ended" and viewer not in session.outputs
    await session.close()


async def test_audio_only_viewer_gets_no_video_track(avatar: Avatar) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    viewer = session.add_output(WebRtcOutput(video=False))
    assert viewer.video is None and viewer.audio is not None and viewer.tracks() == [viewer.audio]
    session.start()
    frame = await asyncio.wait_for(viewer.audio.recv(), 5)
    assert frame.sample_rate == 16000
    await session.close()
