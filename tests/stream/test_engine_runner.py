"""The session runtime with the real warp engine, driven faster than real time."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from facecast.frames import AUDIO_RATE_HZ, MotionFrame, OutputFrame, VideoFrame, frame_samples
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.queues import QueueOutput
from facecast.stream.clock import FreeRunningClock
from facecast.stream.events import PlaybackFinished
from facecast.stream.session import SessionRuntime


def mouth_open(out: OutputFrame) -> float:
    offsets = out.motion.mesh_offsets
    return float(abs(offsets[14, 1] - offsets[13, 1]))  # inner lips apart (cm)


async def collect(session: SessionRuntime, n: int) -> list[OutputFrame]:
    sub = session.add_output(QueueOutput())
    frames = [await sub.get() for _ in range(n)]
    session.remove_output(sub)
    return frames


async def test_frames_carry_exactly_their_audio_and_events_in_order(
    avatar: Avatar, speech: np.ndarray
) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=FreeRunningClock(30))
    listener = session.events.listen()
    sub = session.add_output(QueueOutput())
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
    assert [e.type for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
    assert isinstance(events[2], PlaybackFinished) and not events[2].interrupted
    assert events[2].position == round(speech.size / AUDIO_RATE_HZ, 3)
    assert all(e.session == session.id and e.utterance == utt.id for e in events)
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
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=FreeRunningClock(30))
    listener = session.events.listen()
    sub = session.add_output(QueueOutput())
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
        types.append((await listener.get()).type)
    assert types == ["speaking_started", "speaking_stopped", "playback_finished"]


async def test_idle_session_streams_silence_and_keeps_pace(avatar: Avatar) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128))
    session.start()
    await asyncio.sleep(0.05)
    frames = await collect(session, 15)
    await session.close()
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 15))
    assert not any(f.audio.any() for f in frames)
    span_s = (frames[-1].emitted_ns - frames[0].emitted_ns) / 1e9
    assert 0.3 < span_s < 0.8  # 14 frame intervals at 30 fps = 0.467 s (loose: shared CPU)


class StallingHead(WarpEngine):
    """Rendering stalls for a few frames (a CPU hiccup), as an overloaded machine would."""

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        if any(20 <= m.index < 23 for m in motions):
            time.sleep(0.08)  # ~3 frames late at most: past the skip threshold, far from the re-anchor
        return super().render(motions)


async def test_late_worker_repeats_images_but_never_drops_or_slows_audio(
    avatar: Avatar, speech: np.ndarray
) -> None:
    session = SessionRuntime(StallingHead(avatar, fps=30, size=128))
    sub = session.add_output(QueueOutput())
    session.say(speech[: AUDIO_RATE_HZ * 2], "test")
    session.start()
    frames = [await asyncio.wait_for(sub.get(), 5) for _ in range(50)]
    await session.close()
    assert [f.index for f in frames] == list(range(50))
    skipped = [f for f in frames if not f.rendered]
    assert skipped and session.frames_skipped == len(skipped) == session.runner.frames_skipped
    for f in skipped:  # the previous image again, with this frame's own motion and audio
        assert f.image is frames[f.index - 1].image and f.motion.index == f.index
    assert session.clock.reanchors == 0  # caught up by skipping: the audio clock never slipped
    played = np.concatenate([f.audio for f in frames])
    start = frame_samples(next(f.index for f in frames if f.speech), 30)[0]
    np.testing.assert_allclose(played[start:], speech[: played.size - start], atol=1e-6)
    assert session.describe()["frames_rendered"] == session.frames_emitted - len(skipped)


class SlowHead(WarpEngine):
    """Every render takes longer than a frame: the worker is always late, skipping every other frame."""

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        time.sleep(0.06)
        return super().render(motions)


async def test_first_frame_after_an_interrupt_is_rendered_even_when_late(
    avatar: Avatar, speech: np.ndarray
) -> None:
    session = SessionRuntime(SlowHead(avatar, fps=30, size=128))
    sub = session.add_output(QueueOutput())
    session.start()
    firsts = []
    for n in range(4):  # a repeated pre-interrupt image would show on about half the tries
        session.say(speech, "test")
        before = [await asyncio.wait_for(sub.get(), 5) for _ in range(12 + n)]
        assert any(not f.rendered for f in before)  # the overload policy is active
        generation = session.interrupt()
        while (out := await asyncio.wait_for(sub.get(), 5)).generation < generation:
            pass
        firsts.append(out)
    await session.close()
    assert all(f.rendered and not f.speech for f in firsts)
