"""A viewer's WebRTC output: A/V timestamps at the aiortc tracks, the same media instant, the same send time."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest

from facecast.frames import frame_samples
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.base import OutputState, StaticHost
from facecast.outputs.queues import QueueOutput
from facecast.outputs.webrtc import WebRtcOutput
from facecast.stream.clock import ManualClock
from facecast.stream.session import SessionRuntime


def raw(chunk: av.AudioFrame | av.Packet) -> av.AudioFrame:
    assert isinstance(chunk, av.AudioFrame)  # no codec negotiated: the track hands out raw chunks
    return chunk


def pts(frame: av.AudioFrame | av.VideoFrame | av.Packet) -> int:
    assert frame.pts is not None
    return int(frame.pts)


async def run_to(clock: ManualClock, k: int) -> None:
    """Let the session emit every frame up to k (they reach the outputs before this returns)."""
    clock.advance_to(clock.due_ns(k))
    assert await asyncio.to_thread(clock.wait_idle) == k + 1


async def test_tracks_stamp_one_clock_audio_in_20ms_chunks(avatar: Avatar, speech: np.ndarray) -> None:
    # The session's time moves only when the test says, so a loaded machine cannot overflow the
    # viewer's 3-frame video queue: every frame is taken before the next is made.
    clock = ManualClock(30)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    viewer = session.add_output(WebRtcOutput())
    video, audio = viewer.video, viewer.audio
    assert video is not None and audio is not None and viewer.state is OutputState.LIVE
    session.say(speech[:16000], "test")
    session.start()  # frame 0 is due at once
    frames = [await asyncio.wait_for(video.recv(), 5)]
    chunks = [raw(await asyncio.wait_for(audio.recv(), 5))]
    for k in range(1, 30):
        await run_to(clock, k)
        frames.append(await asyncio.wait_for(video.recv(), 5))
    chunks += [raw(await asyncio.wait_for(audio.recv(), 5)) for _ in range(39)]  # frames 0..23 cover them
    assert audio.queue.dropped == video.queue.dropped == 0
    assert all(v.time_base == Fraction(1, 90000) for v in frames)
    assert [pts(v) for v in frames] == [3000 * k for k in range(30)]
    # Audio: 20 ms at 48 kHz, stamped from the same sample clock (48 kHz index = 3 x 16 kHz index),
    # contiguous: every step exactly one chunk, the first where frame 0's audio starts.
    assert all(
        a.samples == 960 and a.sample_rate == 48000 and a.time_base == Fraction(1, 48000) for a in chunks
    )
    assert [pts(a) for a in chunks] == [960 * k for k in range(40)]
    stats = viewer.stats()
    assert stats["video"]["sent"] == 30 and stats["audio"]["sent"] == 40
    await session.close()
    assert viewer.state is OutputState.STOPPED and video.readyState == "ended"


def test_audio_and_video_leave_on_one_schedule_a_fixed_hold_after_their_media_time() -> None:
    """Fake clock: frames arrive on the session's schedule; each send waits for media time + hold."""
    viewer, fast = WebRtcOutput(), WebRtcOutput(keep_all=True)
    viewer.start(StaticHost(fps=30, size=128))
    fast.start(StaticHost(fps=30, size=128))
    audio, video = viewer.audio, viewer.video
    assert audio is not None and video is not None
    # At 30 fps a 20 ms chunk is complete at most 13.3 ms after it starts (chunk [20, 40) ms waits
    # for frame 1, which starts at 33.3 ms): that is the hold, for both tracks.
    hold = 533 / 16000 - 0.020
    schedule = viewer.schedule  # one for both tracks
    assert audio.schedule is video.schedule is schedule and schedule.hold_s == pytest.approx(hold)
    t0, f1 = 100.0, 533 / 16000
    frame = SimpleNamespace(audio_time_s=f1)  # frame 1 (its audio starts at sample 533), on time
    schedule.arrived(frame, now=t0 + f1)  # type: ignore[arg-type]
    now = t0 + f1
    assert schedule.wait_s(0.020, now) == 0.0  # complete only now: it leaves at once
    assert schedule.wait_s(0.040, now) == pytest.approx(0.040 + hold - f1)
    assert schedule.wait_s(f1, now) == pytest.approx(hold)
    # The schedule is the earliest recent arrival: a late frame (fan-out delay) does not move it.
    for k in range(2, 21):
        schedule.arrived(SimpleNamespace(audio_time_s=k * f1), now=t0 + k * f1)  # type: ignore[arg-type]
    schedule.arrived(SimpleNamespace(audio_time_s=21 * f1), now=t0 + 21 * f1 + 0.050)  # type: ignore[arg-type]
    assert schedule.wait_s(0.080, t0 + 2 * f1) == pytest.approx(0.080 + hold - 2 * f1)
    # Far ahead of the schedule (a burst from an engine catching up): it waits the hold and a little more.
    assert schedule.wait_s(5.0, now) == pytest.approx(hold + 0.020)
    # Late already: leave at once. A simulation reading faster than real time never waits.
    assert schedule.wait_s(0.0, now + 1) == 0.0
    assert fast.audio is not None
    fast.schedule.arrived(frame, now=t0)  # type: ignore[arg-type]
    assert fast.schedule.wait_s(10.0, now=t0) == 0.0
    at_25 = WebRtcOutput()
    at_25.start(StaticHost(fps=25, size=128))
    assert at_25.audio is not None and at_25.schedule.hold_s == 0.0  # two whole chunks a frame


async def test_a_late_viewer_starts_from_the_newest_frame(avatar: Avatar) -> None:
    """Frames queued while a viewer connects are not sent in a burst (it would inflate jitter buffers)."""
    clock = ManualClock(30)  # the session's time moves only when the test says
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    viewer = session.add_output(WebRtcOutput())
    video, audio = viewer.video, viewer.audio
    assert video is not None and audio is not None
    session.start()
    await run_to(clock, 11)  # frames 0..11 queue while the viewer is still connecting
    assert len(audio.queue) == 12 and audio.queue.dropped == 0
    first = raw(await asyncio.wait_for(audio.recv(), 5))
    assert audio.queue.dropped == 11  # frames 0..10 were never sent
    assert pts(first) == 3 * frame_samples(11, 30)[0]  # 48 kHz index of the newest frame's first sample
    await session.close()


async def test_stale_speech_after_interrupt_is_never_sent(avatar: Avatar, speech: np.ndarray) -> None:
    clock = ManualClock(30)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    viewer = session.add_output(WebRtcOutput())
    seen = session.add_output(QueueOutput())
    video, audio = viewer.video, viewer.audio
    assert video is not None and audio is not None
    session.say(speech, "test")
    session.start()
    await run_to(clock, 5)
    raw(await asyncio.wait_for(audio.recv(), 5))  # the viewer is live, from frame 5
    await run_to(clock, 12)  # frames 6..12, speech, wait in the viewer's queue
    assert len(audio.queue) == 7
    frames = [await seen.get() for _ in range(13)]
    assert all(f.speech and np.abs(f.audio).max() > 0.01 for f in frames[6:13])  # audible, were it sent
    generation = session.interrupt()
    chunks = [raw(await asyncio.wait_for(audio.recv(), 5)) for _ in range(10)]  # 200 ms of frames 5..11
    assert audio.last_sent is not None and audio.last_sent.index <= 12
    assert audio.last_sent.generation < generation  # sent after the interrupt, made before it
    assert not any(c.to_ndarray().any() for c in chunks)
    session.remove_output(viewer)
    assert video.readyState == "ended" and viewer not in session.outputs
    await session.close()


async def test_audio_only_viewer_gets_no_video_track(avatar: Avatar) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    viewer = session.add_output(WebRtcOutput(video=False))
    assert viewer.video is None and viewer.audio is not None and viewer.tracks() == [viewer.audio]
    session.start()
    frame = raw(await asyncio.wait_for(viewer.audio.recv(), 5))
    assert frame.sample_rate == 48000 and frame.samples == 960
    await session.close()
