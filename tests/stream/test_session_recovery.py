"""A session survives its engine: a failing step ends what was playing, the session goes back to idle
and speaks again; only an engine that keeps failing fails the session, and never another one.

Driven by FreeRunningClock (frames as fast as they render) and counted in frames, never in seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from facecast.frames import AudioBlock, MotionFrame, OutputFrame, VideoFrame
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.base import Output
from facecast.outputs.queues import DropOldestQueue, QueueOutput
from facecast.stream.clock import FreeRunningClock
from facecast.stream.engine_runner import FAILING_FOR_S, MAX_FAILURE_RUNS
from facecast.stream.events import ErrorEvent, Event, PlaybackFinished
from facecast.stream.session import SessionRuntime
from facecast.stream.speech_queue import QueueClosedError

FPS = 30
WAIT_S = 60  # a guard against hanging, not a measure


def mouth_open(out: OutputFrame) -> float:
    assert out.motion is not None
    return float(abs(out.motion.mesh_offsets[14, 1] - out.motion.mesh_offsets[13, 1]))


class FaultyHead(WarpEngine):
    """The warp engine, with a fault planted in one of its steps at chosen frames.

    site "hook": the session's inject_engine_fault is called (from the worker) as frame `at[0]`'s audio
    goes in, so the next frame's step raises; "push_audio" / "render": that step raises for frame k in `at`
    (a render fault loses the frame's motion, as a real one would)."""

    def __init__(self, avatar: Avatar, site: str, at: Callable[[int], bool]) -> None:
        super().__init__(avatar, fps=FPS, size=128)
        self.site, self.at = site, at
        self.hook: Callable[[], None] | None = None

    def push_audio(self, block: AudioBlock) -> None:
        if self.site == "push_audio" and self.at(block.index):
            self._next_push += 1  # the block is taken, as when _advance fails midway
            self._audio.append(block)
            raise RuntimeError(f"planted fault pushing frame {block.index}")
        super().push_audio(block)
        if self.site == "hook" and self.at(block.index) and self.hook is not None:
            self.hook()

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        if self.site == "render" and any(self.at(m.index) for m in motions):
            raise RuntimeError(f"planted fault rendering frame {motions[0].index}")
        return super().render(motions)


def faulty_session(avatar: Avatar, site: str, at: Callable[[int], bool]) -> SessionRuntime:
    engine = FaultyHead(avatar, site, at)
    session = SessionRuntime(engine, clock=FreeRunningClock(FPS))
    engine.hook = lambda: session.inject_engine_fault()
    return session


async def events_until(listener: DropOldestQueue[Event], done: Callable[[Event], bool]) -> list[Event]:
    events: list[Event] = []
    while not events or not done(events[-1]):
        events.append(await asyncio.wait_for(listener.get(), WAIT_S))
    return events


def finished(utterance: int) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, PlaybackFinished) and e.utterance == utterance


@pytest.mark.parametrize("site", ["hook", "push_audio", "render"])
async def test_an_engine_fault_mid_utterance_ends_it_and_the_session_speaks_again(
    avatar: Avatar, speech: np.ndarray, site: str
) -> None:
    session = faulty_session(avatar, site, lambda k: k == 40)
    listener = session.events.listen()
    sub = session.add_output(QueueOutput())
    first = session.say(speech, "test")  # 6 s: in full flow at frame 40
    session.start()
    events = await events_until(listener, finished(first.id))
    frames = [await asyncio.wait_for(sub.get(), WAIT_S) for _ in range(90)]

    assert [e.type for e in events] == ["speaking_started", "error", "speaking_stopped", "playback_finished"]
    error, end = events[1], events[3]
    assert isinstance(error, ErrorEvent) and error.code == "engine_error"
    assert ("injected engine fault" if site == "hook" else "planted fault") in error.message
    assert isinstance(end, PlaybackFinished) and end.interrupted and 0 < end.position < speech.size / 16000
    # Frames never stopped: one stand-in (the previous image, silence), then idle within 1 s of media time.
    assert [f.index for f in frames] == list(range(90))
    stand_ins = [f for f in frames if not f.rendered]
    assert len(stand_ins) == 1
    fault = stand_ins[0].index
    assert fault < 60 and frames[fault - 1].speech and not stand_ins[0].audio.any()
    assert stand_ins[0].image is frames[fault - 1].image
    after = frames[fault + 1 :]
    assert not any(f.speech or f.audio.any() for f in after)
    idle = next(f for f in after if f.rendered and mouth_open(f) < 0.05)
    assert idle.index - fault <= FPS

    second = session.say(speech[:16000], "test")
    events = await events_until(listener, finished(second.id))
    await session.close()
    assert [e.type for e in events] == ["speaking_started", "speaking_stopped", "playback_finished"]
    assert isinstance(events[-1], PlaybackFinished) and not events[-1].interrupted
    assert session.runner.failures == 1
    assert session.describe()["failure"] is None and session.failure is None


async def test_an_engine_that_keeps_failing_fails_its_session_and_says_why(
    avatar: Avatar, speech: np.ndarray
) -> None:
    session = faulty_session(avatar, "render", lambda k: k >= 20)
    listener = session.events.listen()
    sub = session.add_output(QueueOutput())
    first = session.say(speech, "test")
    waiting = session.say(speech, "test")  # queued behind it, never begun
    session.start()
    events = await events_until(listener, lambda e: isinstance(e, ErrorEvent) and e.code == "engine_failed")
    events += await events_until(listener, finished(waiting.id))

    types = [e.type for e in events]
    assert types[:4] == ["speaking_started", "error", "speaking_stopped", "playback_finished"]
    assert isinstance(events[3], PlaybackFinished) and events[3].utterance == first.id
    failed = events[4]
    assert isinstance(failed, ErrorEvent) and failed.code == "engine_failed"
    assert "the engine failed on every frame for 1 s" in failed.message and "planted fault" in failed.message
    assert isinstance(events[-1], PlaybackFinished) and events[-1].interrupted and events[-1].position == 0
    # Every frame due until the verdict went out (the stand-ins repeat the last image); then the worker stopped.
    frames = [await sub.get() for _ in range(len(sub))]  # all there: frames and events share one path
    assert [f.index for f in frames] == list(range(20 + int(FAILING_FOR_S * FPS)))
    assert all(f.image is frames[19].image for f in frames[20:])
    described = session.describe()
    assert described["state"] == "failed" and described["failure"] == failed.message == session.failure
    with pytest.raises(QueueClosedError, match="the session cannot speak"):
        session.say(speech, "test")
    await session.close()


async def test_an_engine_that_fails_again_and_again_fails_its_session(avatar: Avatar) -> None:
    session = faulty_session(avatar, "render", lambda k: k % 10 == 5)  # recovers, then fails again
    listener = session.events.listen()
    session.start()
    events = await events_until(listener, lambda e: isinstance(e, ErrorEvent) and e.code == "engine_failed")
    await session.close()
    assert [e.type for e in events] == ["error"] * (MAX_FAILURE_RUNS + 1)
    assert all(isinstance(e, ErrorEvent) and e.code == "engine_error" for e in events[:-1])
    assert (
        session.failure is not None and f"failed {MAX_FAILURE_RUNS + 1} times within 10 s" in session.failure
    )
    assert session.frames_emitted == 10 * MAX_FAILURE_RUNS + 5


async def test_a_failed_session_does_not_touch_another(avatar: Avatar) -> None:
    broken = faulty_session(avatar, "render", lambda k: True)  # not even its first frame renders
    healthy = SessionRuntime(WarpEngine(avatar, fps=FPS, size=128), clock=FreeRunningClock(FPS))
    sub = healthy.add_output(QueueOutput())
    listener = broken.events.listen()
    broken.start()
    healthy.start()
    await events_until(listener, lambda e: isinstance(e, ErrorEvent) and e.code == "engine_failed")
    seen = healthy.frames_emitted
    while (await asyncio.wait_for(sub.get(), WAIT_S)).index < seen + FPS:
        pass
    assert broken.describe()["state"] == "failed" and healthy.describe()["state"] == "live"
    assert healthy.failure is None and healthy.runner.failures == 0
    await broken.close()
    await healthy.close()


class ExplodingOutput(Output):
    kind = "exploding"

    def on_frame(self, frame: OutputFrame) -> None:
        if frame.index == 3:
            raise ValueError("cannot take frame 3")


async def test_a_failing_output_is_removed_with_an_error_event(avatar: Avatar) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=FPS, size=128), clock=FreeRunningClock(FPS))
    listener = session.events.listen()
    bad = session.add_output(ExplodingOutput())
    good = session.add_output(QueueOutput())
    session.start()
    event = await asyncio.wait_for(listener.get(), WAIT_S)
    frames = [await asyncio.wait_for(good.get(), WAIT_S) for _ in range(10)]
    await session.close()
    assert isinstance(event, ErrorEvent) and event.code == "output_error" and event.session == session.id
    assert event.message == "a exploding output failed and was removed (cannot take frame 3)"
    assert bad not in session.outputs and bad.stats()["state"] == "failed"
    assert [f.index for f in frames] == list(range(10))
