"""Pipecat: a facecast avatar between the TTS and the transport output, as Pipecat's avatar services are.

    pipeline = Pipeline([transport.input(), stt, context_aggregator.user(), llm, tts,
                         FacecastVideoService(server_url="http://127.0.0.1:8080", avatar="photo.jpg"),
                         transport.output(), context_aggregator.assistant()])

TTS audio frames go to the session as they arrive (consumed here); out come, at the session's frame rate,
an `OutputImageRawFrame` per video frame and, while the avatar speaks, the `TTSAudioRawFrame` of exactly
that frame's audio first (resampled to the pipeline's output rate), so picture and sound leave together.
Idle frames (nothing said) are images only, so the transport's bot-speaking logic sees speech alone.
An `InterruptionFrame` (and `UserStartedSpeakingFrame` with `interrupt_on_user_speech`) clears the
session's speech at its next frame. Start connects, end and cancel close the session. A failure (no
server, unknown avatar, refused token, the server going away) is pushed as a permanent error carrying
the typed `FacecastError`, also kept in `.error`; the pipeline worker's ProcessorUnusablePolicy decides
whether the pipeline ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.ai_service import AIService
from pipecat.services.settings import ServiceSettings

from facecast_client.api import FacecastClient, SessionInfo
from facecast_client.errors import FacecastError
from facecast_client.frames import Frame as FacecastFrame
from facecast_client.live import LiveAvatar
from facecast_client.pcm import SERVER_RATE_HZ, PcmConverter


class FacecastVideoService(AIService):
    def __init__(
        self,
        *,
        server_url: str,
        avatar: str | Path | None = None,
        api_token: str | None = None,
        session_id: str | None = None,
        fps: int | None = None,
        background: str | None = None,
        image: Literal["jpeg", "rgb24"] | None = None,
        interrupt_on_user_speech: bool = False,
        **kwargs: Any,
    ) -> None:
        """avatar: an avatar id or a photo's path (uploaded), None for the server's default; background:
        keep, color:#RRGGBB, blur or image:<upload id> (None: the server's); session_id: drive an existing session instead of
        creating one (it is then left open at the end)."""
        super().__init__(settings=ServiceSettings(model=None), **kwargs)  # no model to choose
        self._client = FacecastClient(server_url, api_token)
        self._live = LiveAvatar(
            self._client, avatar, fps=fps, background=background, image=image, session_id=session_id
        )
        self._interrupt_on_user_speech = interrupt_on_user_speech
        self.session: SessionInfo | None = None
        self.error: FacecastError | None = None
        self._out: PcmConverter | None = None
        self._forward_task: Any = None
        self._speaking = False  # TTS audio sent since the last end of utterance

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]  # (as FrameProcessor's)
        # Pipecat sets processors up concurrently: connecting here costs the pipeline no extra start time.
        await super().setup(setup)
        self._out = PcmConverter(setup.audio_out_sample_rate)
        try:
            self.session = await self._live.start()
        except FacecastError as exc:
            self.error = exc

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self.error is not None:
            await self._fail(self.error)
            return
        self._forward_task = self.create_task(self._forward_frames())

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._close()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and self.error is None and self.session is not None:
            # The avatar speaks it: the same audio comes out with its images. (Without an avatar the TTS
            # audio passes on, so the assistant is still heard.)
            await self._live.push(frame.audio, frame.sample_rate, frame.num_channels)
            self._speaking = True
            return
        if isinstance(frame, TTSStoppedFrame) and self._speaking and self.session is not None:
            await self._live.end_utterance()
            self._speaking = False
        elif isinstance(frame, InterruptionFrame) or (
            self._interrupt_on_user_speech and isinstance(frame, UserStartedSpeakingFrame)
        ):
            if self.session is not None:
                await self._live.interrupt()
            self._speaking = False
        await self.push_frame(frame, direction)

    async def _forward_frames(self) -> None:
        try:
            async for frame in self._live.frames():
                await self._push_avatar_frame(frame)
        except FacecastError as exc:
            await self._fail(exc)

    async def _push_avatar_frame(self, frame: FacecastFrame) -> None:
        assert self._out is not None
        if frame.speech:
            audio = self._out.convert(frame.audio, SERVER_RATE_HZ)
            if frame.ends_utterance:
                audio = np.concatenate([audio, self._out.flush()])
            if audio.size:
                await self.push_frame(TTSAudioRawFrame(audio.tobytes(), self._out.rate, 1))
        else:
            self._out.flush()  # an interrupted utterance's resampler tail is dropped with it
        height, width = frame.image.shape[:2]
        await self.push_frame(
            OutputImageRawFrame(image=frame.image.tobytes(), size=(width, height), format="RGB")
        )

    async def _fail(self, exc: FacecastError) -> None:
        self.error = exc
        await self.push_error(f"facecast: {exc}", exception=exc, force_treat_as_permanent=True)

    async def _close(self) -> None:
        if self._forward_task is not None:
            await self.cancel_task(self._forward_task)
            self._forward_task = None
        await self._live.close()
        await self._client.close()
