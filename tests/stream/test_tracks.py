"""A/V timestamps at the aiortc tracks: the same media instant, the same send time."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np

from facecast.models.avatar import Avatar
from facecast.models.talking_head import TalkingHead
from facecast.stream.session import SessionRuntime
from facecast.stream.tracks import SessionAudioTrack, SessionVideoTrack, av_offset_s


async def test_tracks_stamp_one_clock_and_leave_together(avatar: Avatar, speech: np.ndarray) -> None:
    session = SessionRuntime(TalkingHead(avatar, fps=30, size=128))
    video, audio = SessionVideoTrack(session), SessionAudioTrack(session)
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
        offsets.append(av_offset_s(video, audio))
    await session.close()
    assert max(abs(o) for o in offsets if o is not None) < 0.02


async def test_stale_speech_after_interrupt_is_never_sent(avatar: Avatar, speech: np.ndarray) -> None:
    session = SessionRuntime(TalkingHead(avatar, fps=30, size=128))
    video, audio = SessionVideoTrack(session), SessionAudioTrack(session)
    session.say(speech, "test")
    session.start()
    for _ in range(10):
        await asyncio.gather(video.recv(), audio.recv())
    await asyncio.sleep(0.1)  # let frames queue up in the viewer's queues, then interrupt
    session.interrupt()
    for _ in range(10):
        a = await asyncio.wait_for(audio.recv(), 5)
        assert not a.to_ndarray().any()
    video.stop()
    audio.stop()
    await session.close()
