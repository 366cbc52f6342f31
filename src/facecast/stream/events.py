"""A session's events: typed records, serialised in one place (`Event.to_dict`) for the WebSocket, SSE
and metrics, and fanned out to every listener by the session's EventHub.

    speaking_started    the first sample of an utterance left the server (with its first frame)
    speaking_stopped    its last sample left, or it was interrupted after starting
    playback_finished   it is over: position (seconds played) and whether it was interrupted
    error               something went wrong: code and one sentence
    output              an output the session pushes to (RTMP/SRT) changed state: live, reconnecting...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Self

from facecast.outputs.queues import DropOldestQueue

LISTENER_QUEUE_EVENTS = 1000


@dataclass(frozen=True, kw_only=True)
class _Event:
    session: str = ""  # stamped by the session when it publishes
    time: float = 0.0  # unix seconds, stamped with `session`

    def to_dict(self) -> dict[str, Any]:
        """The wire form: {"type", ...fields, "session", "time"}."""
        fields = dataclasses.asdict(self)
        return {"type": fields.pop("type"), **fields}

    def stamped(self, session: str, time: float) -> Self:
        return dataclasses.replace(self, session=session, time=round(time, 3))


@dataclass(frozen=True, kw_only=True)
class SpeakingStarted(_Event):
    type: Literal["speaking_started"] = "speaking_started"
    utterance: int


@dataclass(frozen=True, kw_only=True)
class SpeakingStopped(_Event):
    type: Literal["speaking_stopped"] = "speaking_stopped"
    utterance: int


@dataclass(frozen=True, kw_only=True)
class PlaybackFinished(_Event):
    type: Literal["playback_finished"] = "playback_finished"
    utterance: int
    position: float  # seconds of the utterance that were played
    interrupted: bool


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class OutputChanged(_Event):
    type: Literal["output"] = "output"
    output: str  # the output's id
    kind: str  # "push"
    state: str
    message: str | None = None  # why, for reconnecting and failed


Event = SpeakingStarted | SpeakingStopped | PlaybackFinished | ErrorEvent | OutputChanged


class EventHub:
    """A session's events fanned out to every WebSocket / SSE listener (event loop only)."""

    def __init__(self) -> None:
        self._listeners: set[DropOldestQueue[Event]] = set()
        self.counts: dict[str, int] = {}  # per event type, for /metrics

    def listen(self) -> DropOldestQueue[Event]:
        sub: DropOldestQueue[Event] = DropOldestQueue(maxlen=LISTENER_QUEUE_EVENTS)
        self._listeners.add(sub)
        return sub

    def unlisten(self, sub: DropOldestQueue[Event]) -> None:
        self._listeners.discard(sub)
        sub.close()

    def publish(self, event: Event) -> None:
        self.counts[event.type] = self.counts.get(event.type, 0) + 1
        for sub in list(self._listeners):
            sub.put(event)

    def close(self) -> None:
        for sub in list(self._listeners):
            sub.close()
        self._listeners.clear()
