"""What the session will say next: queued utterances plus live (microphone) audio.

The event loop appends; the engine worker takes exactly one video frame's worth of samples per
frame. Every take records which utterance samples it carried (segments), so events fire when
those samples actually leave the server, not when they were queued. An interrupt bumps the session's
generation (stream/interruption.py) and drops every queued utterance in the same step.

Audio is cleaned as it enters (finite, in [-1, 1]: stream/audio_input.clean_audio) whatever its source,
the last line of defence before the engine; the inputs clean it already, so this is one cheap check.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from facecast.frames import AUDIO_RATE_HZ
from facecast.stream.audio_input import clean_audio
from facecast.stream.interruption import Interruption

MAX_QUEUED_S = 600.0  # refuse to buffer more than ten minutes of speech per session
MAX_LIVE_S = 0.25  # live input is real time: beyond this backlog drop the oldest (latency, not loss)
# A streamed utterance (PCM arriving in real time, e.g. over the WebSocket) starts to play once this much
# of it is queued, and again after it ran dry. A frame takes 33 ms at once while a real-time sender
# delivers 20 ms chunks, so without a lead a frame tick can find the audio a chunk short: each shortfall
# was a gap of silence inside a word and a permanent step up in latency (measured: 182 → 216 ms over
# the first bursts of `bench av_playout`). 33 ms + 20 ms + jitter margin; whole utterances never wait.
STREAM_LEAD_S = 0.08

_ids = itertools.count(1)


class QueueFullError(ValueError):
    pass


class QueueClosedError(QueueFullError):
    """The session cannot speak any more (its engine failed); a QueueFullError so callers refuse alike."""


@dataclass(eq=False)
class Utterance:
    """One utterance: chunks of float32 16 kHz audio, closed by end()."""

    source: str
    id: int = field(default_factory=lambda: next(_ids))
    chunks: deque[np.ndarray] = field(default_factory=deque)
    queued_samples: int = 0
    taken_samples: int = 0
    emitted_samples: int = 0
    ended: bool = False
    started: bool = False  # speaking_started sent
    finished: bool = False  # playback_finished sent
    dropped: bool = False  # removed by an interrupt: late chunks are ignored
    buffering: bool = True  # an open utterance waits for STREAM_LEAD_S of audio before (re)starting


@dataclass(slots=True)
class Segment:
    """`count` samples of `utterance` carried by one frame; last = the utterance's final samples."""

    utterance: Utterance
    count: int
    last: bool


class SpeechQueue:
    def __init__(self, interruption: Interruption | None = None, max_queued_s: float = MAX_QUEUED_S) -> None:
        self.interruption = interruption or Interruption()
        self.max_queued_s = max_queued_s
        self._lock = threading.Lock()
        self._utterances: deque[Utterance] = deque()
        self._live: deque[np.ndarray] = deque()
        self._live_samples = 0
        self._dropped: list[Utterance] = []
        self.closed: str | None = None  # why no more speech is taken (close())

    @property
    def generation(self) -> int:
        return self.interruption.generation

    # -- event-loop side -------------------------------------------------------------------
    def begin(self, source: str) -> Utterance:
        utt = Utterance(source=source)
        with self._lock:
            self._utterances.append(utt)
        return utt

    def append(self, utt: Utterance, audio: np.ndarray) -> None:
        if audio.size == 0:
            return
        audio = clean_audio(audio)
        with self._lock:
            if utt.dropped:
                return
            if utt.ended:
                raise ValueError("utterance already ended")
            self._admit_locked(audio.size)
            utt.chunks.append(audio)
            utt.queued_samples += audio.size

    def end(self, utt: Utterance) -> None:
        with self._lock:
            utt.ended = True

    def say(self, source: str, audio: np.ndarray) -> Utterance:
        """A whole utterance at once (file upload, TTS); a refused one leaves nothing queued."""
        utt = Utterance(source=source, ended=True)
        audio = clean_audio(audio)
        with self._lock:
            self._admit_locked(audio.size)
            if audio.size:
                utt.chunks.append(audio)
                utt.queued_samples = audio.size
            self._utterances.append(utt)
        return utt

    def _admit_locked(self, samples: int) -> None:
        if self.closed is not None:
            raise QueueClosedError(self.closed)
        if self._queued_locked() + samples > self.max_queued_s * AUDIO_RATE_HZ:
            raise QueueFullError(f"more than {self.max_queued_s:.0f} s of speech queued")

    def push_live(self, audio: np.ndarray) -> None:
        audio = clean_audio(audio)
        with self._lock:
            self._live.append(audio)
            self._live_samples += audio.size
            while self._live_samples > MAX_LIVE_S * AUDIO_RATE_HZ and len(self._live) > 1:
                self._live_samples -= self._live.popleft().size

    def interrupt(self) -> int:
        """Drop every queued utterance and live backlog; returns the new generation."""
        with self._lock:
            generation = self.interruption.bump()
            for utt in self._utterances:
                utt.dropped = True
            self._dropped.extend(self._utterances)
            self._utterances.clear()
            self._live.clear()
            self._live_samples = 0
            return generation

    def close(self, reason: str) -> list[Utterance]:
        """Take no more speech (append and say raise QueueClosedError(reason), one sentence); returns the
        utterances that were queued, now dropped, to be reported."""
        with self._lock:
            self.closed = reason
            dropped = [*self._dropped, *self._utterances]
            for utt in self._utterances:
                utt.dropped = True
            self._dropped.clear()
            self._utterances.clear()
            self._live.clear()
            self._live_samples = 0
            return dropped

    def queued_seconds(self) -> float:
        with self._lock:
            return self._queued_locked() / AUDIO_RATE_HZ

    def _queued_locked(self) -> int:
        return sum(u.queued_samples - u.taken_samples for u in self._utterances)

    # -- worker side -----------------------------------------------------------------------
    def abort_in_flight(self) -> list[Utterance]:
        """Drop the queued utterances that have begun to play (the engine failed on them); they are
        returned to be reported. Utterances not yet begun stay queued, and the generation is unchanged:
        frames already out were made correctly and play on."""
        with self._lock:
            aborted = [utt for utt in self._utterances if utt.taken_samples > 0]
            for utt in aborted:
                utt.dropped = True
                self._utterances.remove(utt)
            return aborted

    def take_dropped(self) -> list[Utterance]:
        with self._lock:
            dropped, self._dropped = self._dropped, []
            return dropped

    def take(self, n: int) -> tuple[np.ndarray, list[Segment], int]:
        """n samples for one frame (speech + live mixed, silence-padded), its segments, generation."""
        out = np.zeros(n, np.float32)
        segments: list[Segment] = []
        with self._lock:
            pos = 0
            while self._utterances and pos <= n:
                utt = self._utterances[0]
                if utt.buffering and not utt.ended:
                    if utt.queued_samples - utt.taken_samples < STREAM_LEAD_S * AUDIO_RATE_HZ:
                        break  # building its lead: silence meanwhile
                utt.buffering = False
                while utt.chunks and pos < n:
                    chunk = utt.chunks[0]
                    m = min(n - pos, chunk.size)
                    out[pos : pos + m] = chunk[:m]
                    if m == chunk.size:
                        utt.chunks.popleft()
                    else:
                        utt.chunks[0] = chunk[m:]
                    pos += m
                    utt.taken_samples += m
                    if segments and segments[-1].utterance is utt:
                        segments[-1].count += m
                    else:
                        segments.append(Segment(utt, m, False))
                done = utt.ended and not utt.chunks
                if done:
                    if not segments or segments[-1].utterance is not utt:
                        segments.append(Segment(utt, 0, True))
                    segments[-1].last = True
                    self._utterances.popleft()
                    continue
                if pos < n:
                    utt.buffering = True  # ran dry: silence until it has its lead again
                break
            live = 0
            while self._live and live < n:
                chunk = self._live[0]
                m = min(n - live, chunk.size)
                out[live : live + m] += chunk[:m]
                if m == chunk.size:
                    self._live.popleft()
                else:
                    self._live[0] = chunk[m:]
                live += m
                self._live_samples -= m
            return np.clip(out, -1.0, 1.0, out=out), segments, self.generation
