"""An interrupt and a new utterance that both land while the engine worker is mid-step: the worker takes the
new utterance's first audio before it notices the interrupt. Only the interrupted utterance may end as
interrupted; the new one plays in full (a CI run caught the new one being ended with the old).

Driven by FreeRunningClock and counted in frames: the race is made to happen, never waited for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from facecast.frames import AudioBlock
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.stream.clock import FreeRunningClock
from facecast.stream.events import Event, PlaybackFinished
from facecast.stream.session import SessionRuntime

FPS = 30
WAIT_S = 60  # a guard against hanging, not a measure


class HookedHead(WarpEngine):
    """The warp engine, calling `hook` on the worker thread right after frame `at`'s audio goes in. At the
    first frames the engine is still filling its look-ahead, so the worker goes on taking audio within the
    same step: what lands in the hook is taken before the worker's check for an interrupt."""

    def __init__(self, avatar: Avatar, at: int) -> None:
        super().__init__(avatar, fps=FPS, size=128)
        self.at = at
        self.hook: Callable[[], None] | None = None

    def push_audio(self, block: AudioBlock) -> None:
        super().push_audio(block)
        if block.index == self.at and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()


async def test_an_utterance_begun_right_after_an_interrupt_is_not_ended_with_it(
    avatar: Avatar, speech: np.ndarray
) -> None:
    engine = HookedHead(avatar, at=0)
    assert engine.lookahead_frames >= 1  # frame 1 is taken in the step that took frame 0
    session = SessionRuntime(engine, clock=FreeRunningClock(FPS))
    listener = session.events.listen()
    first = session.say(speech[:16000], "test")  # 1 s, its first samples taken for frame 0
    second_audio = speech[16000:32000]
    second: list[int] = []

    def interrupt_and_speak() -> None:  # what the audio WebSocket does for interrupt, start, PCM, end
        session.interrupt()
        second.append(session.say(second_audio, "test").id)

    engine.hook = interrupt_and_speak
    session.start()
    finished: dict[int, PlaybackFinished] = {}
    try:
        while len(finished) < 2:
            event: Event = await asyncio.wait_for(listener.get(), WAIT_S)
            if isinstance(event, PlaybackFinished):
                finished[event.utterance] = event
    finally:
        await session.close()
    assert finished[first.id].interrupted and finished[first.id].position < 1.0
    assert not finished[second[0]].interrupted, finished[second[0]]
    assert finished[second[0]].position == 1.0  # all of it played
