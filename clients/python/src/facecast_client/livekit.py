"""LiveKit Agents integration (the `livekit` extra): a facecast session as a livekit-agents VideoGenerator,
and an AvatarSession that runs LiveKit's own AvatarRunner in the agent's process ("local mode", as
bitHuman's plugin does), so the avatar's video and voice are published from the agent's participant.

    avatar = FacecastAvatarSession(server_url="http://127.0.0.1:8080", avatar="my-avatar-id")
    await avatar.start(session, room=ctx.room)  # before session.start(): it takes over output.audio
    await session.start(agent=MyAgent(), room=ctx.room)

The agent's TTS audio goes through a QueueAudioOutput to facecast; each facecast frame comes back with
exactly the audio it covers, and the runner's AVSynchronizer publishes both, so the voice heard is the
voice the lips were made from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    AvatarSession,
    QueueAudioOutput,
    VideoGenerator,
)
from livekit.agents.voice.io import AudioOutput

from facecast_client.api import FacecastClient, SessionInfo
from facecast_client.errors import FacecastError, SessionEnded
from facecast_client.frames import Frame
from facecast_client.live import LiveAvatar
from facecast_client.pcm import SERVER_RATE_HZ, PcmConverter

logger = logging.getLogger("facecast_client.livekit")

__all__ = ["FacecastAudioOutput", "FacecastAvatarSession", "FacecastVideoGenerator"]


class FacecastVideoGenerator(VideoGenerator):
    """A LiveAvatar as a livekit-agents VideoGenerator (what AvatarRunner drives).

    Audio pushed in (an AudioFrame at any rate and channel count, or AudioSegmentEnd) is the session's
    speech. Out come, per facecast frame: its image as an RGB24 VideoFrame, then for a speaking frame
    its audio at `audio_sample_rate` as one AudioFrame, then AudioSegmentEnd after an utterance's last
    frame. Idle frames are video only. `live` is started by the caller or by start(); aclose() closes it.
    """

    def __init__(self, live: LiveAvatar, *, audio_sample_rate: int = 24000, audio_channels: int = 1) -> None:
        self.live = live
        self.audio_sample_rate = audio_sample_rate
        self.audio_channels = audio_channels
        # One streaming resampler for the audio out: its state carries across frames, so an utterance
        # comes out whole (no samples lost or repeated at frame boundaries), flushed at its end.
        self._out = PcmConverter(audio_sample_rate)
        self._clears = 0  # bumped by clear_buffer(); a frame in hand across a clear loses its speech
        self._in_segment = False  # speech audio yielded and its AudioSegmentEnd not yet
        self._ended = False  # the session's frames stopped (server gone, or closed)

    async def start(self) -> SessionInfo:
        return await self.live.start()

    @property
    def ended(self) -> bool:
        return self._ended

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if self._ended:
            return  # nothing will animate it any more; refusing would only kill the runner's reader
        try:
            if isinstance(frame, AudioSegmentEnd):
                await self.live.end_utterance()
            elif frame.samples_per_channel:
                samples = np.frombuffer(frame.data, dtype=np.int16)
                await self.live.push(samples, frame.sample_rate, frame.num_channels)
        except (FacecastError, ConnectionError) as exc:
            # The frames side sees the same failure and ends the iteration; this side only notes it.
            logger.warning("facecast: speech not delivered: %s", exc)

    async def clear_buffer(self) -> None:
        """Interrupt: the server drops queued speech at its next frame; what the resampler holds of the
        old speech is dropped here."""
        self._clears += 1
        self._out = PcmConverter(self.audio_sample_rate)
        self._in_segment = False  # the runner reports the interrupted playback itself
        if not self._ended:
            try:
                await self.live.interrupt()
            except (FacecastError, ConnectionError) as exc:
                logger.warning("facecast: interrupt not delivered: %s", exc)

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        server_gone = False
        try:
            async for frame in self.live.frames():
                clears = self._clears
                yield self.video_frame(frame)
                # The runner may hold our video frame for a frame's time (its AV queue is bounded);
                # a clear in that time means this frame's speech is the interrupted one.
                if not frame.speech or clears != self._clears:
                    continue
                audio = self._out.convert(frame.audio, SERVER_RATE_HZ, 1)
                if frame.ends_utterance:
                    audio = np.concatenate([audio, self._out.flush()])
                if audio.size:
                    self._in_segment = True
                    yield self.audio_frame(audio)
                if frame.ends_utterance and clears == self._clears:
                    self._in_segment = False
                    yield AudioSegmentEnd()
        except SessionEnded as exc:
            logger.warning("facecast: the session's frames ended: %s", exc)
            server_gone = True
        finally:
            self._ended = True
        if server_gone or self._in_segment:
            # Speech cut short (or pushed and never voiced): end the segment, so the runner reports its
            # playback finished instead of the agent waiting for it forever (it ignores this when idle).
            self._in_segment = False
            yield AudioSegmentEnd()

    @staticmethod
    def video_frame(frame: Frame) -> rtc.VideoFrame:
        # RGB24 as it comes: rtc.VideoSource takes it (converted to I420 natively), no RGBA copy needed.
        height, width = frame.image.shape[:2]
        return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, frame.image.tobytes())

    def audio_frame(self, mono: np.ndarray) -> rtc.AudioFrame:
        if self.audio_channels > 1:
            mono = np.repeat(mono[:, None], self.audio_channels, axis=1)
        return rtc.AudioFrame(
            data=np.ascontiguousarray(mono, dtype=np.int16).tobytes(),
            sample_rate=self.audio_sample_rate,
            num_channels=self.audio_channels,
            samples_per_channel=mono.shape[0],
        )

    async def aclose(self) -> None:
        """Close the LiveAvatar (its frames end, so does the iteration; a session it created is deleted)."""
        self._ended = True
        await self.live.close()


class FacecastAudioOutput(QueueAudioOutput):
    """The agent's audio output for a facecast avatar: LiveKit's QueueAudioOutput, until the avatar's frames
    end (the facecast server went away). From then on nothing would play the agent's speech, so each
    segment is reported started as it is captured and finished (interrupted, position 0) when flushed:
    the agent goes on instead of waiting for a playout that never comes."""

    def __init__(self, generator: FacecastVideoGenerator, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._generator = generator
        self._unplayed = 0  # segments captured after the avatar ended, not yet reported finished

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if not self._generator.ended:
            await super().capture_frame(frame)
            return
        segments = self.captured_playout_segments
        await AudioOutput.capture_frame(self, frame)  # the base's segment bookkeeping; nothing is queued
        if self.captured_playout_segments > segments:
            self._unplayed += 1
            self.on_playback_started(created_at=time.time())

    def flush(self) -> None:
        if not self._generator.ended:
            super().flush()
            return
        AudioOutput.flush(self)
        for _ in range(self._unplayed):
            self.on_playback_finished(playback_position=0.0, interrupted=True)
        self._unplayed = 0


class FacecastAvatarSession(AvatarSession):
    """A facecast avatar for an AgentSession, in local mode: the AvatarRunner runs in the agent's
    process and publishes the avatar's audio and video tracks as the agent's own participant.

    `avatar` is an avatar id, a photo's path (uploaded), or None for the server's default.
    """

    def __init__(
        self,
        *,
        server_url: str,
        avatar: str | Path | None = None,
        api_token: str | None = None,
        fps: int | None = None,
        background: str | None = None,
        audio_sample_rate: int = 24000,
    ) -> None:
        super().__init__()
        self._server_url = server_url
        self._avatar = avatar
        self._api_token = api_token
        self._fps = fps
        self._background = background
        self._audio_sample_rate = audio_sample_rate
        self._identity = ""
        self.client: FacecastClient | None = None
        self.generator: FacecastVideoGenerator | None = None
        self.audio_output: FacecastAudioOutput | None = None
        self.runner: AvatarRunner | None = None
        self.info: SessionInfo | None = None

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "facecast"

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:
        client = FacecastClient(self._server_url, self._api_token)
        live = LiveAvatar(client, self._avatar, fps=self._fps, background=self._background)
        try:
            info = await live.start()
        except BaseException:
            await live.close()
            await client.close()
            raise
        self.client, self.info = client, info
        self.generator = FacecastVideoGenerator(live, audio_sample_rate=self._audio_sample_rate)
        # The agent's TTS is resampled by the session to the server's own rate, so it is resampled once;
        # playback starts when facecast's frames carry the speech (the runner says so), not on capture.
        self.audio_output = FacecastAudioOutput(
            self.generator, sample_rate=SERVER_RATE_HZ, wait_playback_start=True
        )
        size, fps = int(info["size"]), int(info["fps"])
        options = AvatarOptions(
            video_width=size,
            video_height=size,
            video_fps=fps,
            audio_sample_rate=self._audio_sample_rate,
            audio_channels=1,
        )
        self.runner = AvatarRunner(
            room, audio_recv=self.audio_output, video_gen=self.generator, options=options
        )
        await self.runner.start()
        agent_session.output.audio = self.audio_output
        # Local mode: the avatar's tracks are the agent's, so the avatar is the local participant.
        self._identity = room.local_participant.identity
        await super().start(agent_session, room)

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.aclose()  # closes the QueueAudioOutput too
            self.runner = None
        if self.generator is not None:
            await self.generator.aclose()  # deletes the facecast session
            self.generator = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        # The base would remove the avatar participant from the room, which in local mode is the agent
        # itself: detach from the room here, so the base only does the rest of its cleanup.
        room: rtc.Room | None = self._room  # the base's own field (livekit-agents 1.8.9)
        self._room = None
        if room is not None:
            room.off("connection_state_changed", self._on_connection_state_changed)
        await super().aclose()
