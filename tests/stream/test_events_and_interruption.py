"""Typed session events in their one wire form, and the interruption rule every output applies."""

from __future__ import annotations

import json

import numpy as np

from facecast.frames import OutputFrame
from facecast.stream.events import ErrorEvent, EventHub, PlaybackFinished, SpeakingStarted
from facecast.stream.interruption import Interruption
from facecast.stream.speech_queue import SpeechQueue


def test_events_serialise_in_one_wire_form() -> None:
    event = PlaybackFinished(utterance=7, position=1.25, interrupted=True).stamped("s1", 1000.12345)
    wire = event.to_dict()
    assert list(wire)[0] == "type"
    assert wire == {
        "type": "playback_finished",
        "utterance": 7,
        "position": 1.25,
        "interrupted": True,
        "session": "s1",
        "time": 1000.123,
    }
    error = ErrorEvent(code="bad_pcm", message="PCM chunk of 3 bytes is odd").to_dict()
    assert error["type"] == "error" and json.loads(json.dumps(error)) == error


async def test_event_hub_counts_and_fans_out() -> None:
    hub = EventHub()
    a, b = hub.listen(), hub.listen()
    hub.publish(SpeakingStarted(utterance=1))
    assert (await a.get()).type == (await b.get()).type == "speaking_started"
    hub.unlisten(b)
    hub.publish(SpeakingStarted(utterance=2))
    assert len(a) == 1 and len(b) == 0 and hub.counts == {"speaking_started": 2}


def frame(generation: int, speech: bool) -> OutputFrame:
    return OutputFrame(
        index=0, fps=30, image=np.zeros((2, 2, 3), np.uint8), audio=np.zeros(533, np.float32),
        generation=generation, speech=speech, video=None, audio_frame=None,  # type: ignore[arg-type]
    )  # fmt: skip


def test_only_speech_from_an_older_generation_is_stale() -> None:
    interruption = Interruption()
    queue = SpeechQueue(interruption)
    queue.say("test", np.full(2000, 0.5, np.float32))
    _, segments, generation = queue.take(533)
    assert generation == 0 and segments
    assert not interruption.is_stale(frame(0, speech=True))
    assert queue.interrupt() == interruption.generation == 1
    assert interruption.is_stale(frame(0, speech=True))
    assert not interruption.is_stale(frame(0, speech=False))  # silence or live input plays on
    assert not interruption.is_stale(frame(1, speech=True))
    audio, segments, generation = queue.take(533)  # the drop happened with the bump: nothing old is left
    assert generation == 1 and segments == [] and not audio.any()
    assert [u.dropped for u in queue.take_dropped()] == [True]
