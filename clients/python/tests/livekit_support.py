"""Helpers of the LiveKit tests: TTS-like rtc.AudioFrames, collecting what a generator yields."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
from facecast_client import FacecastClient
from facecast_client.frames import Frame
from facecast_client.live import LiveAvatar
from facecast_client.livekit import FacecastVideoGenerator
from facecast_client.pcm import PcmConverter
from livekit import rtc

from conftest import read_wav

FPS = 30  # the test server's
SIZE = 256
OUT_RATE = 24000  # the audio the generator yields
SPEECH_RATE = 16000  # the media files'


def speech(media_dir: Path, name: str, seconds: float) -> np.ndarray:
    audio, rate = read_wav(media_dir / name)
    assert rate == SPEECH_RATE
    return audio[: int(rate * seconds)]


def tts_frames(mono16k: np.ndarray, rate: int, channels: int, chunk_s: float) -> list[rtc.AudioFrame]:
    """Speech the way a TTS hands it over: `chunk_s` frames at `rate`, on `channels` equal channels."""
    converter = PcmConverter(rate)
    mono = np.concatenate([converter.convert(mono16k, SPEECH_RATE), converter.flush()])
    step = int(rate * chunk_s)
    frames = []
    for at in range(0, mono.size, step):
        chunk = np.repeat(mono[at : at + step, None], channels, axis=1)
        frames.append(rtc.AudioFrame(chunk.tobytes(), rate, channels, chunk.shape[0]))
    return frames


def samples(frame: rtc.AudioFrame) -> np.ndarray:
    return np.frombuffer(frame.data, np.int16)


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    converter = PcmConverter(SPEECH_RATE)
    return np.concatenate([converter.convert(audio, rate), converter.flush()])


def best_match(reference: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """The lag (samples) at which `got` best matches `reference`, and their correlation there."""
    n = reference.size + got.size
    xcorr = np.fft.irfft(
        np.fft.rfft(got.astype(float), n) * np.conj(np.fft.rfft(reference.astype(float), n)), n
    )
    lag = int(np.argmax(xcorr))
    lag = lag if lag < got.size else lag - n
    a = got[max(lag, 0) :].astype(float)
    b = reference[max(-lag, 0) :].astype(float)
    m = min(a.size, b.size)
    return lag, float(np.corrcoef(a[:m], b[:m])[0, 1])


def spy_frames(live: LiveAvatar) -> list[Frame]:
    """The facecast frames the generator consumes (their index, speech and end flags), as it reads them."""
    seen: list[Frame] = []
    frames = live.frames

    async def spied() -> AsyncIterator[Frame]:
        async for frame in frames():
            seen.append(frame)
            yield frame

    live.frames = spied  # type: ignore[method-assign]
    return seen


async def poll(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Wait for `condition` (generous timeouts: the 2-core machine is shared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)


class Collected:
    """Everything a generator yields, in order, gathered by a task."""

    def __init__(self, generator: FacecastVideoGenerator) -> None:
        self.items: list[Any] = []
        self.task = asyncio.ensure_future(self._run(generator))

    async def _run(self, generator: FacecastVideoGenerator) -> None:
        async for item in generator:
            self.items.append(item)

    def count(self, kind: type, start: int = 0) -> int:
        return sum(isinstance(item, kind) for item in self.items[start:])

    async def wait(self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        await poll(lambda: condition() or self.task.done(), timeout, what)
        assert not self.task.done(), f"the generator ended early: {self.task}"

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def per_video_frame(items: list[Any]) -> list[tuple[rtc.VideoFrame, np.ndarray | None]]:
    """Each video frame with the audio yielded right after it (its own), or None (idle)."""
    pairs: list[tuple[rtc.VideoFrame, np.ndarray | None]] = []
    for item in items:
        if isinstance(item, rtc.VideoFrame):
            pairs.append((item, None))
        elif isinstance(item, rtc.AudioFrame):
            video, audio = pairs[-1]
            pairs[-1] = (video, samples(item) if audio is None else np.concatenate([audio, samples(item)]))
    return pairs


class StandInPublication:
    def __init__(self, track: rtc.LocalTrack) -> None:
        self.track = track
        self.kind = track.kind
        self.sid = f"TR_{uuid.uuid4().hex[:8]}"

    async def wait_for_subscription(self) -> None:
        return None


class StandInParticipant:
    def __init__(self, room: StandInRoom) -> None:
        self.identity = "agent-1"
        self.kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        self.track_publications: dict[str, StandInPublication] = {}
        self._room = room

    async def publish_track(
        self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions
    ) -> StandInPublication:
        publication = StandInPublication(track)
        self.track_publications[publication.sid] = publication
        self._room.emit("local_track_published", publication, track)
        return publication

    def track(self, kind: rtc.TrackKind.ValueType) -> rtc.LocalTrack:
        return next(p.track for p in self.track_publications.values() if p.kind == kind)


class StandInRoom(rtc.EventEmitter[str]):
    """What AvatarRunner and AvatarSession use of rtc.Room, without a LiveKit server: events, a connected
    state, and a local participant that "publishes" the runner's real tracks (kept, to be read back)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "stand-in"
        self.local_participant = StandInParticipant(self)
        self.remote_participants: dict[str, Any] = {}

    def isconnected(self) -> bool:
        return True


@contextlib.asynccontextmanager
async def started_generator(server_url: str) -> AsyncIterator[tuple[FacecastVideoGenerator, list[Frame]]]:
    async with FacecastClient(server_url) as client:
        live = LiveAvatar(client)
        seen = spy_frames(live)
        gen = FacecastVideoGenerator(live, audio_sample_rate=OUT_RATE)
        info = await gen.start()
        assert info["fps"] == FPS and info["size"] == SIZE
        yield gen, seen
        await gen.aclose()
