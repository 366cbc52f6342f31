"""The session runtime with the real TalkingHead, driven faster than real time."""

from __future__ import annotations

import asyncio

import numpy as np

from facecast.frames import AUDIO_RATE_HZ, frame_samples
from facecast.models.avatar import Avatar
from facecast.models.talking_head import TalkingHead
from facecast.stream.clock import FreeRunningClock
from facecast.stream.engine_runner import OutputFrame
from facecast.stream.session import SessionRuntime


def mouth_open(out: OutputFrame) -> float:
    offsets = out.motion.mesh_offsets
    return float(abs(offsets[14, 1] - offsets[13, 1]))  # inner lips apart (cm)


async def collect(session: SessionRuntime, n: int) -> list[OutputFrame]:
    sub = session.subscribe(maxlen=None)
    frames = [await sub.get() for _ in range(n)]
    session.unsubscribe(sub)
    return frames


async def test_frames_carry_exactly_their_audio_and_events_in_order(
    avatar: Avatar, speech: np.ndarray
) -> None:
    session = SessionRuntime(TalkingHead(avatar, fps=30, size=128), clock=FreeRunningClock(30))
    listener = session.events.listen()
    sub = session.subscribe(maxlen=None)
    utt = session.say(speech, "test")
    session.start()
    frames = []
    while True:
        frames.append(await sub.get())
        if utt.finished and len(listener) >= 3:
            break
    tail = [await sub.get() for _ in range(10)]  # idle again after the utterance
    await session.close()
    events = [await listener.get() for _ in range(3)]
    assert [e["type"] for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
    assert events[2]["position"] == round(speech.size / AUDIO_RATE_HZ, 3) and not events[2]["interrupted"]
    played = np.concatenate([f.audio for f in frames])
    start = next(i for i, f in enumerate(frames) if f.speech)
    offset = frame_samples(start, 30)[0]
    lead = session.lookahead_frames
    assert start <= lead + 1  # speech queued before start lands in the first pushed frames
    np.testing.assert_allclose(played[offset : offset + speech.size], speech, atol=1e-6)
    for f in frames:
        a, b = frame_samples(f.index, 30)
        assert f.audio.size == b - a and f.audio_frame.pts == a and f.audio_frame.samples == b - a
        assert f.video.pts == f.index * 3000
        assert abs(f.video_time_s - f.audio_time_s) < 1e-3
    assert max(mouth_open(f) for f in frames if f.speech) > 4 * max(mouth_open(f) for f in tail)


async def test_interrupt_next_frame_is_idle_and_no_speech_follows(avatar: Avatar, speech: np.ndarray) -> None:
    session = SessionRuntime(TalkingHead(avatar, fps=30, size=128), clock=FreeRunningClock(30))
    listener = session.events.listen()
    sub = session.subscribe(maxlen=None)
    session.say(speech, "test")
    session.start()
    while (out := await sub.get()).index < 45:
        pass
    gen = session.interrupt()
    after = []
    while len(after) < 30:
        out = await sub.get()
        if out.generation >= gen:
            after.append(out)
    await session.close()
    assert not any(f.speech or f.audio.any() for f in after)
    assert mouth_open(after[0]) < 0.05
    types = []
    while len(listener):
        types.append((await listener.get())["type"])
    assert types == ["speaking_started", "speaking_stopped", "playback_finished"]


async def test_idle_session_streams_silence_and_keeps_pace(avatar: Avatar) -> None:
    session = SessionRuntime(TalkingHead(avatar, fps=30, size=128))
    session.start()
    await asyncio.sleep(0.05)
    frames = await collect(session, 15)
    await session.close()
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 15))
    assert not any(f.audio.any() for f in frames)
    span_s = (frames[-1].emitted_ns - frames[0].emitted_ns) / 1e9
    assert 0.3 < span_s < 0.8  # 14 frame intervals at 30 fps = 0.467 s (loose: shared CPU)
