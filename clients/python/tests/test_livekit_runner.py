"""The LiveKit Agents integration under LiveKit's own AvatarRunner with a QueueAudioOutput (a stand-in for
rtc.Room only: no LiveKit server here), FacecastAvatarSession with a real AgentSession; a real room only
when LIVEKIT_URL/_API_KEY/_API_SECRET are set."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from facecast_client import FacecastClient
from facecast_client.frames import Frame
from facecast_client.livekit import FacecastAvatarSession, FacecastVideoGenerator
from livekit import api, rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, QueueAudioOutput
from livekit.agents.voice.io import PlaybackFinishedEvent, PlaybackStartedEvent
from livekit_support import (
    FPS,
    OUT_RATE,
    SIZE,
    SPEECH_RATE,
    StandInRoom,
    poll,
    samples,
    speech,
    tts_frames,
)

from conftest import ServerProcess

# -- under LiveKit's own AvatarRunner ---------------------------------------------------------------------


class Playback:
    """A QueueAudioOutput's playback events, in order."""

    def __init__(self, output: QueueAudioOutput) -> None:
        self.events: list[Any] = []
        output.on("playback_started", self.events.append)
        output.on("playback_finished", self.events.append)

    def finished(self) -> list[PlaybackFinishedEvent]:
        return [e for e in self.events if isinstance(e, PlaybackFinishedEvent)]


class Reader:
    """What one of the runner's published tracks carries, read back through LiveKit's own streams."""

    def __init__(self, stream: rtc.AudioStream | rtc.VideoStream) -> None:
        self.stream = stream
        self.audio: list[np.ndarray] = []
        self.sizes: list[tuple[int, int]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.stream:
            if isinstance(event.frame, rtc.AudioFrame):
                self.audio.append(samples(event.frame).copy())
            else:
                self.sizes.append((event.frame.width, event.frame.height))

    async def aclose(self) -> None:
        await self.stream.aclose()  # its native handle too, so nothing is sent to a closed loop later
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_through_livekits_avatar_runner_with_a_queue_audio_output(
    generator: tuple[FacecastVideoGenerator, list[Frame]], media_dir: Path
) -> None:
    gen, seen = generator
    room = StandInRoom()
    queue_output = QueueAudioOutput(sample_rate=OUT_RATE, wait_playback_start=True)
    playback = Playback(queue_output)
    runner = AvatarRunner(
        room,  # type: ignore[arg-type]
        audio_recv=queue_output,
        video_gen=gen,
        options=AvatarOptions(
            video_width=SIZE, video_height=SIZE, video_fps=FPS, audio_sample_rate=OUT_RATE, audio_channels=1
        ),
    )
    await runner.start()
    readers: list[Reader] = []
    try:
        # The runner publishes its tracks at the first (idle) frame; what they carry is read back.
        participant = room.local_participant
        await poll(lambda: len(participant.track_publications) == 2, what="the runner's tracks")
        audio_track = participant.track(rtc.TrackKind.KIND_AUDIO)
        heard = Reader(rtc.AudioStream.from_track(track=audio_track, sample_rate=OUT_RATE, num_channels=1))
        shown = Reader(rtc.VideoStream(participant.track(rtc.TrackKind.KIND_VIDEO)))
        readers += [heard, shown]

        # An utterance played out: started, then finished (not interrupted) at its duration.
        said = speech(media_dir, "speech_1.wav", 2.0)
        tts = tts_frames(said, OUT_RATE, 1, 0.02)
        frames_before = len(seen)
        for frame in tts:
            await queue_output.capture_frame(frame)
        queue_output.flush()
        await poll(lambda: len(playback.finished()) == 1, what="playback_finished")
        assert len(playback.events) == 2
        started, finished = playback.events
        assert isinstance(started, PlaybackStartedEvent)  # first, when the runner voiced the speech
        assert finished.interrupted is False
        assert abs(finished.playback_position - said.size / SPEECH_RATE) <= 0.2, finished

        # LiveKit's own sources carried it: the speech's energy on the audio track (once the audio
        # source's queue has played out), and the video track got frames of the session's size, about as
        # many as facecast made in that time.
        def energy_ratio() -> float:
            pushed = np.concatenate([samples(f) for f in tts]).astype(float)
            played = np.concatenate(heard.audio or [np.zeros(1, np.int16)]).astype(float)
            return float(np.sum(played**2) / np.sum(pushed**2))

        await poll(lambda: energy_ratio() >= 0.9, timeout=10, what="the speech on the audio track")
        assert energy_ratio() <= 1.1, energy_ratio()
        assert shown.sizes and set(shown.sizes) == {(SIZE, SIZE)}
        made = len(seen) - frames_before
        assert len(shown.sizes) >= 0.5 * made, (len(shown.sizes), made)

        # A second utterance, interrupted through the QueueAudioOutput: finished, interrupted, early.
        for frame in tts_frames(speech(media_dir, "speech_2.wav", 5.0), OUT_RATE, 1, 0.02):
            await queue_output.capture_frame(frame)
        queue_output.flush()
        await poll(lambda: len(playback.events) == 3, what="the second playback_started")
        assert isinstance(playback.events[2], PlaybackStartedEvent)
        await asyncio.sleep(0.5)
        queue_output.clear_buffer()
        await poll(lambda: len(playback.finished()) == 2, what="the interrupted playback_finished")
        interrupted = playback.finished()[1]
        assert interrupted.interrupted is True and 0.2 < interrupted.playback_position < 4.0, interrupted
        await asyncio.sleep(0.5)  # nothing else reports on it (no second finish for the same utterance)
        assert len(playback.finished()) == 2
        assert not any(f.speech for f in seen[-10:])
    finally:
        for reader in readers:
            await reader.aclose()
        await runner.aclose()


async def test_avatar_session_takes_the_agents_audio_output(server_url: str, media_dir: Path) -> None:
    room = StandInRoom()
    agent_session: AgentSession[None] = AgentSession()
    avatar = FacecastAvatarSession(server_url=server_url)
    await avatar.start(agent_session, room)  # type: ignore[arg-type]
    try:
        assert avatar.provider == "facecast"
        assert avatar.avatar_identity == room.local_participant.identity  # local mode: the agent's tracks
        output = agent_session.output.audio
        assert output is avatar.audio_output and output is not None
        assert avatar.info is not None and avatar.info["fps"] == FPS
        await avatar.wait_for_join(timeout=30)  # the runner published video as the local participant

        finished: list[PlaybackFinishedEvent] = []
        output.on("playback_finished", finished.append)
        said = speech(media_dir, "goforward.wav", 1.5)
        for frame in tts_frames(said, 16000, 1, 0.02):  # the rate the session resamples TTS to
            await output.capture_frame(frame)
        output.flush()
        event = await asyncio.wait_for(output.wait_for_playout(), 30)
        assert finished == [event] and not event.interrupted
        assert abs(event.playback_position - said.size / SPEECH_RATE) <= 0.2, event
        session_id = avatar.info["id"]
    finally:
        await avatar.aclose()
    async with FacecastClient(server_url) as client:
        assert session_id not in [s["id"] for s in await client.list_sessions()]  # deleted on close


LIVEKIT_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


@pytest.mark.skipif(
    not all(os.environ.get(name) for name in LIVEKIT_ENV),
    reason="needs a LiveKit server: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
)
async def test_in_a_real_livekit_room(
    generator: tuple[FacecastVideoGenerator, list[Frame]], media_dir: Path
) -> None:
    gen, _ = generator
    room_name = f"facecast-test-{uuid.uuid4().hex[:8]}"

    def token(identity: str) -> str:
        grants = api.VideoGrants(room_join=True, room=room_name)
        return api.AccessToken().with_identity(identity).with_grants(grants).to_jwt()

    agent, viewer = rtc.Room(), rtc.Room()
    got_video: asyncio.Future[rtc.RemoteVideoTrack] = asyncio.get_running_loop().create_future()

    @viewer.on("track_subscribed")
    def _subscribed(track: rtc.Track, *_: Any) -> None:
        if isinstance(track, rtc.RemoteVideoTrack) and not got_video.done():
            got_video.set_result(track)

    await agent.connect(os.environ["LIVEKIT_URL"], token("agent"))
    await viewer.connect(os.environ["LIVEKIT_URL"], token("viewer"))
    queue_output = QueueAudioOutput(sample_rate=OUT_RATE)
    options = AvatarOptions(SIZE, SIZE, FPS, OUT_RATE, 1)
    runner = AvatarRunner(agent, audio_recv=queue_output, video_gen=gen, options=options)
    try:
        await runner.start()
        finished = asyncio.get_running_loop().create_future()
        queue_output.on("playback_finished", lambda e: finished.done() or finished.set_result(e))
        for frame in tts_frames(speech(media_dir, "goforward.wav", 1.0), OUT_RATE, 1, 0.02):
            await queue_output.capture_frame(frame)
        queue_output.flush()
        event = await asyncio.wait_for(finished, 30)
        assert not event.interrupted
        stream = rtc.VideoStream(await asyncio.wait_for(got_video, 30))  # the viewer sees the avatar
        try:
            first = await asyncio.wait_for(stream.__anext__(), 30)
            assert first.frame.width > 0 and first.frame.height > 0  # (simulcast may send a smaller layer)
        finally:
            await stream.aclose()
    finally:
        await runner.aclose()
        await viewer.disconnect()
        await agent.disconnect()


async def test_after_the_server_goes_away_the_agent_is_not_left_waiting(
    tmp_path: Path, media_dir: Path
) -> None:
    server = ServerProcess(tmp_path)
    agent_session: AgentSession[None] = AgentSession()
    avatar = FacecastAvatarSession(server_url=server.url)
    try:
        await avatar.start(agent_session, StandInRoom())  # type: ignore[arg-type]
        assert avatar.generator is not None and agent_session.output.audio is avatar.audio_output
        server.stop()
        await poll(lambda: avatar.generator is not None and avatar.generator.ended, what="the frames to end")
        output = agent_session.output.audio
        for frame in tts_frames(speech(media_dir, "goforward.wav", 0.5), 16000, 1, 0.02):
            await output.capture_frame(frame)
        output.flush()
        event = await asyncio.wait_for(output.wait_for_playout(), 5)  # answered, not waited for forever
        assert event.interrupted and event.playback_position == 0.0
    finally:
        await avatar.aclose()
        server.stop()
