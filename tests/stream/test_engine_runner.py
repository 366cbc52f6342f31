"""The session runtime with the real warp engine, driven faster than real time."""

from __future__ import annotations

import asyncio

import numpy as np

from facecast.frames import AUDIO_RATE_HZ, MotionFrame, OutputFrame, VideoFrame, frame_samples
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.queues import QueueOutput
from facecast.stream.clock import NS_PER_S, FreeRunningClock, ManualClock
from facecast.stream.engine_runner import SKIP_AFTER_FRAMES
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


async def idle(clock: ManualClock) -> int:
    """The frame the worker waits for once it has emitted everything due (all frames before it are out)."""
    return await asyncio.to_thread(clock.wait_idle)


async def test_idle_session_emits_each_frame_when_due_and_not_before(avatar: Avatar) -> None:
    clock = ManualClock(30)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    sub = session.add_output(QueueOutput())
    session.start()
    assert await idle(clock) == 1 and len(sub) == 1  # frame 0 is due at the start
    for k in range(1, 16):
        clock.advance_to(clock.due_ns(k) - 1)
        assert await idle(clock) == k and len(sub) == session.frames_emitted == k  # not a ns early
        clock.advance_to(clock.due_ns(k))
        assert await idle(clock) == k + 1 and len(sub) == session.frames_emitted == k + 1
    frames = [await sub.get() for _ in range(16)]
    await session.close()
    assert [f.index for f in frames] == list(range(16))
    assert [f.due_ns for f in frames] == [k * NS_PER_S // 30 for k in range(16)]
    assert all(f.rendered for f in frames) and not any(f.audio.any() for f in frames)
    assert clock.reanchors == 0 and session.frames_skipped == 0


class StallingHead(WarpEngine):
    """Rendering frames 20..22 costs 80 ms each on the session's clock (a CPU hiccup); the rest, nothing."""

    def __init__(self, avatar: Avatar, clock: ManualClock) -> None:
        super().__init__(avatar, fps=30, size=128)
        self.clock = clock

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        for m in motions:
            if 20 <= m.index < 23:
                self.clock.advance(80_000_000)
        return super().render(motions)


async def test_late_worker_repeats_images_but_never_drops_or_slows_audio(
    avatar: Avatar, speech: np.ndarray
) -> None:
    clock = ManualClock(30, auto=True)  # virtual time: only the stalls cost anything
    session = SessionRuntime(StallingHead(avatar, clock), clock=clock)
    sub = session.add_output(QueueOutput())
    session.say(speech[: AUDIO_RATE_HZ * 2], "test")
    session.start()
    frames = [await asyncio.wait_for(sub.get(), 30) for _ in range(50)]
    await session.close()
    assert [f.index for f in frames] == list(range(50))
    assert [f.due_ns for f in frames] == [k * NS_PER_S // 30 for k in range(50)]
    # Frame 20 renders on time and ends 80 ms late; frame 21 starts 46.7 ms late (under the two-frame
    # threshold), renders, and ends 160 ms after frame 20's due time; frame 22 starts 93.3 ms late: its
    # image is left out. Frame 23 starts 60 ms late and renders; from frame 25 the worker is on time.
    assert SKIP_AFTER_FRAMES == 2
    skipped = [f for f in frames if not f.rendered]
    assert [f.index for f in skipped] == [22]
    assert session.frames_skipped == 1 == session.runner.frames_skipped
    for f in skipped:  # the previous image again, with this frame's own motion and audio
        assert f.image is frames[f.index - 1].image and f.motion.index == f.index
    assert clock.reanchors == 0  # caught up by skipping: the audio clock never slipped
    played = np.concatenate([f.audio for f in frames])
    start = frame_samples(next(f.index for f in frames if f.speech), 30)[0]
    np.testing.assert_allclose(played[start:], speech[: played.size - start], atol=1e-6)
    assert any(f.speech for f in frames[20:24])  # the skip fell inside speech
    assert session.describe()["frames_rendered"] == session.frames_emitted - len(skipped)


async def test_first_frame_after_an_interrupt_is_rendered_even_when_late(
    avatar: Avatar, speech: np.ndarray
) -> None:
    clock = ManualClock(30)
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=128), clock=clock)
    sub = session.add_output(QueueOutput())
    session.say(speech, "test")
    session.start()
    behind = 7 * NS_PER_S // 60  # 3.5 frames: past the skip threshold (2), far from a re-anchor
    for k in range(1, 13):
        clock.advance_to(clock.due_ns(k))
        assert await idle(clock) == k + 1
    # The control: 3.5 frames late, frames 13 and 14 (3.5 and 2.5 frames late) repeat the previous
    # image; 15 and 16 (1.5 and 0.5 late) render; 17 is not yet due.
    clock.advance_to(clock.due_ns(13) + behind)
    assert await idle(clock) == 17
    generation = session.interrupt()
    clock.advance_to(clock.due_ns(17) + behind)  # as late again: but 17 is the first after the interrupt
    assert await idle(clock) == 21
    frames = [await sub.get() for _ in range(21)]
    await session.close()
    assert [f.index for f in frames] == list(range(21))
    assert [f.index for f in frames if not f.rendered] == [13, 14, 18]
    assert all(f.speech for f in frames[13:17]) and all(f.generation < generation for f in frames[:17])
    first = frames[17]
    assert first.rendered and first.generation == generation and not first.speech
    assert not first.audio.any()
