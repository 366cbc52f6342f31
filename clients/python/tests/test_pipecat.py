"""FacecastVideoService in a real Pipecat pipeline against a real facecast server: TTS-like audio frames
in, images and audio frames out, in sync (the project's own lip-sync measure), interrupted on time."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
from facecast_client import BadRequest, NotFound, SessionEnded, Unauthorized, Unreachable
from facecast_client.pcm import PcmConverter
from facecast_client.pipecat import FacecastVideoService
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker, ProcessorUnusablePolicy
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from conftest import ServerProcess, lipsync, read_wav

OUT_RATE = 24000  # Pipecat's default output rate
TTS_RATE = 22050  # a TTS's own rate: resampled on the way in, never refused
CHUNK_S = 0.04


def tts_frames(speech: np.ndarray, rate: int) -> list[Frame]:
    """An utterance the way a TTS service streams it: started, 40 ms audio chunks, stopped."""
    step = int(rate * CHUNK_S)
    chunks = [speech[at : at + step] for at in range(0, speech.size, step)]
    return [
        TTSStartedFrame(),
        *(TTSAudioRawFrame(c.astype("<i2").tobytes(), rate, 1) for c in chunks),
        TTSStoppedFrame(),
    ]


def speech_at(media_dir: Path, name: str, seconds: float) -> np.ndarray:
    audio, rate = read_wav(media_dir / name)
    return PcmConverter(TTS_RATE).convert(audio[: int(rate * seconds)], rate)


def after_each_image(frames: list[Frame], rate: int, fps: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The images, and the audio aligned to them: each image's own audio (pushed just before it), or
    silence of one frame's length for idle images."""
    images, audio, pending = [], [], np.zeros(0, np.int16)
    for frame in frames:
        if isinstance(frame, TTSAudioRawFrame):
            pending = np.concatenate([pending, np.frombuffer(frame.audio, np.int16)])
        elif isinstance(frame, OutputImageRawFrame):
            width, height = frame.size
            images.append(np.frombuffer(frame.image, np.uint8).reshape(height, width, 3))
            k = len(images)
            length = k * rate // fps - (k - 1) * rate // fps
            audio.append(pending if pending.size else np.zeros(length, np.int16))
            pending = np.zeros(0, np.int16)
    return images, np.concatenate(audio)


def speech_runs(frames: list[Frame]) -> list[list[int]]:
    """Runs of consecutive images that came with audio: the audio sample count of each image."""
    runs: list[list[int]] = [[]]
    pending = 0
    for frame in frames:
        if isinstance(frame, TTSAudioRawFrame):
            pending += len(frame.audio) // 2
        elif isinstance(frame, OutputImageRawFrame):
            if pending:
                runs[-1].append(pending)
            elif runs[-1]:
                runs.append([])
            pending = 0
    return [run for run in runs if run]


async def test_speech_in_synced_images_and_audio_out_then_interrupted(
    server_url: str, media_dir: Path, tmp_path: Path
) -> None:
    first = speech_at(media_dir, "speech_1.wav", 4.0)
    second = speech_at(media_dir, "speech_2.wav", 6.0)
    service = FacecastVideoService(server_url=server_url)
    down, _ = await run_test(
        service,
        frames_to_send=[
            *tts_frames(first, TTS_RATE),
            SleepFrame(first.size / TTS_RATE + 1.5),  # it plays out in real time, then idles
            *tts_frames(second, TTS_RATE),
            SleepFrame(2.0),  # mid-utterance
            InterruptionFrame(),
            SleepFrame(1.5),
        ],
        pipeline_params=PipelineParams(audio_out_sample_rate=OUT_RATE),
        start_timeout=30,
    )
    assert service.session is not None and service.session["fps"] == 30 and service.error is None
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    before, after = down[:cut], down[cut + 1 :]

    # In sync: the first utterance as the pipeline output it, measured by the project's tracker.
    images, audio = after_each_image(before, OUT_RATE, 30)
    measured = lipsync(images, audio, OUT_RATE, 30, tmp_path / "pipecat.mp4")
    assert measured["best_lag"] == 0 and measured["best_corr"] >= 0.7, measured

    # Pairs at the session's rate: while speaking, each image comes right after exactly its frame's audio
    # (800 samples at 24 kHz and 30 fps); the first utterance spans its duration in frames.
    kinds = [type(f) for f in before if isinstance(f, TTSAudioRawFrame | OutputImageRawFrame)]
    assert all(
        b is OutputImageRawFrame for a, b in zip(kinds, kinds[1:], strict=False) if a is TTSAudioRawFrame
    )
    runs = speech_runs(before)
    assert np.median([n for run in runs for n in run]) == OUT_RATE // 30
    assert abs(len(runs[0]) - first.size / TTS_RATE * 30) <= 2
    assert abs(sum(runs[0]) - first.size / TTS_RATE * OUT_RATE) <= OUT_RATE // 30

    # Interrupted: no speech audio later than 100 ms of pipeline time after the InterruptionFrame,
    # and the images go on (idle).
    late_speech = sum(len(f.audio) // 2 for f in after if isinstance(f, TTSAudioRawFrame))
    assert late_speech <= 0.1 * OUT_RATE
    assert sum(isinstance(f, OutputImageRawFrame) for f in after) >= 20


class ErrorCatcher(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[ErrorFrame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame):
            self.errors.append(frame)
        await self.push_frame(frame, direction)


async def run_until_it_fails(service: FacecastVideoService, timeout: float = 30) -> ErrorFrame:
    """A pipeline that cancels itself when a processor becomes unusable; its error frame."""
    catcher = ErrorCatcher()
    worker = PipelineWorker(
        Pipeline([catcher, service]),
        cancel_on_idle_timeout=False,
        processor_unusable_policy=ProcessorUnusablePolicy.CANCEL,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), timeout)  # ends: it does not hang
    assert catcher.errors, "no error reached the pipeline"
    return catcher.errors[0]


async def test_no_server_is_one_clear_error_and_the_pipeline_ends() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    service = FacecastVideoService(server_url=url)
    error = await run_until_it_fails(service)
    assert isinstance(service.error, Unreachable) and error.exception is service.error


async def test_unknown_avatar_carries_the_servers_code(server_url: str) -> None:
    service = FacecastVideoService(server_url=server_url, avatar="0123456789abcdef")
    await run_until_it_fails(service)
    assert isinstance(service.error, NotFound) and service.error.code.endswith("not_found"), service.error


async def test_a_background_the_server_cannot_show_is_refused(server_url: str) -> None:
    service = FacecastVideoService(
        server_url=server_url, background="image:0123456789abcdef"
    )  # no such upload
    await run_until_it_fails(service)
    assert isinstance(service.error, BadRequest) and service.error.code == "bad_background"


async def test_refused_token_and_a_server_that_goes_away(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, token="s3cret")
    try:
        refused = FacecastVideoService(server_url=server.url, api_token="wrong")
        await run_until_it_fails(refused)
        assert isinstance(refused.error, Unauthorized) and refused.error.code == "unauthorized"

        service = FacecastVideoService(server_url=server.url, api_token="s3cret")
        running = asyncio.ensure_future(run_until_it_fails(service))
        for _ in range(300):
            if service.session is not None:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # streaming
        server.stop()
        await asyncio.wait_for(running, 30)
        assert isinstance(service.error, SessionEnded), service.error
    finally:
        server.stop()
