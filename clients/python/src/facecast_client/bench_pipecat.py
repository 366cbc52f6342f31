"""Latency through the Pipecat service: TTS audio into the pipeline → the first open-mouth image out.

    python -m facecast_client.bench_pipecat --server http://127.0.0.1:8080 --audio speech.wav [--trials 12]

A real pipeline (a source, FacecastVideoService, a probe) against a running facecast server. Each trial
waits for the avatar to idle, pushes one utterance starting at its voiced onset as 40 ms TTS frames
(faster than real time, as TTS services stream), and times, at the probe, the first image paired with
speech audio and the first image whose mouth has opened. "Open" is judged on the images alone: the mean
change, in the lower-middle of the face crop, from the last idle image before the trial, above a third
of what a calibration utterance reaches (the 95th percentile). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import av
import numpy as np
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from facecast_client.pipecat import FacecastVideoService

RATE = 24000
CHUNK = RATE * 40 // 1000


class Probe(FrameProcessor):
    """Records (arrival time, image or None for audio) of every frame the service emits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, np.ndarray | None]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame):
            width, height = frame.size
            self.seen.append(
                (time.monotonic(), np.frombuffer(frame.image, np.uint8).reshape(height, width, 3))
            )
        elif isinstance(frame, TTSAudioRawFrame):
            self.seen.append((time.monotonic(), None))
        await self.push_frame(frame, direction)


def mouth_change(image: np.ndarray, rest: np.ndarray) -> float:
    """Mean absolute change in the lower-middle of the face crop (where facecast's crop puts the mouth)."""
    h, w = image.shape[:2]
    box = (slice(int(h * 0.45), int(h * 0.85)), slice(int(w * 0.3), int(w * 0.7)))
    return float(np.abs(image[box].astype(np.int16) - rest[box].astype(np.int16)).mean())


def read_speech(path: str) -> np.ndarray:
    """int16 mono at RATE, from its voiced onset (the first 20 ms window above 10 % of the peak RMS)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(path) as container:
        frames = [out for f in container.decode(audio=0) for out in resampler.resample(f)]
    frames += resampler.resample(None)
    audio = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    win = RATE // 50
    rms = np.sqrt(np.convolve(audio.astype(np.float64) ** 2, np.ones(win) / win, mode="valid"))
    onset = int(np.argmax(rms > 0.1 * rms.max()))
    return audio[onset:]


async def measure(server: str, speech: np.ndarray, trials: int, seconds: float) -> dict[str, object]:
    probe = Probe()
    service = FacecastVideoService(server_url=server)
    worker = PipelineWorker(
        Pipeline([service, probe]),
        params=PipelineParams(audio_out_sample_rate=RATE),
        cancel_on_idle_timeout=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.ensure_future(runner.run())
    utterance = speech[: int(RATE * seconds)]

    async def say() -> float:
        await worker.queue_frame(TTSStartedFrame())
        sent = time.monotonic()
        for at in range(0, utterance.size, CHUNK):
            await worker.queue_frame(TTSAudioRawFrame(utterance[at : at + CHUNK].tobytes(), RATE, 1))
        await worker.queue_frame(TTSStoppedFrame())
        return sent

    async def idle_image(wait_s: float) -> np.ndarray:
        await asyncio.sleep(wait_s)
        return next(img for _, img in reversed(probe.seen) if img is not None)

    for _ in range(600):  # the session starts in setup
        if service.session is not None or service.error is not None:
            break
        await asyncio.sleep(0.05)
    if service.error is not None:
        raise SystemExit(f"error: {service.error}")
    # Calibration: how far the mouth region moves in speech.
    rest = await idle_image(1.0)
    start = len(probe.seen)
    await say()
    await asyncio.sleep(seconds + 0.5)
    changes = [mouth_change(img, rest) for _, img in probe.seen[start:] if img is not None]
    threshold = float(np.percentile(changes, 95)) / 3

    first_speech, first_open = [], []
    for _ in range(trials):
        rest = await idle_image(1.2)
        start = len(probe.seen)
        sent = await say()
        await asyncio.sleep(0.8)
        await worker.queue_frame(InterruptionFrame())  # back to idle for the next trial
        trial = probe.seen[start:]
        audio_at = next(i for i, (_, img) in enumerate(trial) if img is None)
        first_speech.append(next(t for t, img in trial[audio_at:] if img is not None) - sent)
        first_open.append(
            next(t for t, img in trial if img is not None and mouth_change(img, rest) > threshold) - sent
        )
    await worker.cancel()
    await asyncio.wait_for(running, 10)
    ms = lambda xs, q: round(float(np.percentile(xs, q)) * 1000, 1)  # noqa: E731
    return {
        "trials": trials,
        "first_speech_image_ms": {"p50": ms(first_speech, 50), "p95": ms(first_speech, 95)},
        "first_open_mouth_ms": {"p50": ms(first_open, 50), "p95": ms(first_open, 95)},
        "session": service.session["id"] if service.session else None,
        "open_threshold": round(threshold, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facecast_client.bench_pipecat", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--server", required=True, help="a running facecast server, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument("--audio", required=True, help="a speech file (WAV)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each trial's utterance")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.server, read_speech(args.audio), args.trials, args.seconds))
    print(f"{'':28}{'p50 ms':>10}{'p95 ms':>10}")
    for key in ("first_speech_image_ms", "first_open_mouth_ms"):
        row = result[key]
        assert isinstance(row, dict)
        print(f"{key:28}{row['p50']:>10}{row['p95']:>10}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
