"""The engine contract (facecast.engine.Engine) and the registry of engines by name.

`StripesEngine` is a third engine, written the way a plugin would be: it draws the frame index as stripes,
so a test can tell frames apart. It is registered by name and served by a real server with no edit there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np
import pytest
from facecast_client import FacecastClient, pcm_s16le

from facecast.config import RenderSettings
from facecast.engine import Engine, EngineError, create_engine, engine_names, register_engine
from facecast.frames import AudioBlock, MotionFrame, VideoFrame, frame_samples
from facecast.outputs.queues import QueueOutput
from facecast.server.runner import RunningServer


class StripesEngine(Engine):
    """Frame k is out two frames of audio later; its image shows k, its motion the audio's loudness."""

    skippable = True

    def __init__(self, size: int = 32, fps: int = 30) -> None:
        super().__init__(fps=fps, size=size, lookahead_frames=2)
        self._motions: deque[MotionFrame] = deque()
        self._pushed = 0
        self.relaxed = 0

    def _advance(self, samples: np.ndarray) -> None:
        self._pushed += 1
        if self._pushed > self.lookahead_frames:
            k = self._pushed - self.lookahead_frames - 1
            speech = float(np.sqrt(np.mean(samples**2)))
            self._motions.append(MotionFrame(k, np.zeros((468, 3), np.float32), speech=speech))

    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        count = len(self._motions) if limit is None else min(limit, len(self._motions))
        motions = [self._motions.popleft() for _ in range(count)]
        if not render:
            return list(motions)
        return [
            VideoFrame(m.index, np.full((self.size, self.size, 3), m.index % 256, np.uint8), m)
            for m in motions
        ]

    def _relax(self) -> None:
        self.relaxed += 1
        for m in self._motions:
            m.speech = 0.0


def stripes_factory(avatar: Any, fps: int, render: RenderSettings) -> StripesEngine:
    return StripesEngine(size=render.size, fps=fps)


def block(k: int, value: float = 0.0, generation: int = 0) -> AudioBlock:
    start, end = frame_samples(k, 30)
    return AudioBlock(k, np.full(end - start, value, np.float32), generation)


def test_frames_come_out_in_order_each_with_the_audio_it_covers() -> None:
    engine = StripesEngine()
    for k in range(5):
        engine.push_audio(block(k, value=k / 10))
    frames = engine.pop_frames()
    assert [f.index for f in frames] == [0, 1, 2]  # the last two wait for their look-ahead
    for f in frames:
        assert f.image is not None and f.image[0, 0, 0] == f.index
        np.testing.assert_array_equal(f.audio.samples, block(f.index, value=f.index / 10).samples)
    assert engine.pop_frames() == []
    with pytest.raises(ValueError, match="frame 7 pushed, frame 5 expected"):
        engine.push_audio(block(7))


def test_a_skippable_engine_leaves_images_out_only_when_asked() -> None:
    engine = StripesEngine()
    for k in range(6):
        engine.push_audio(block(k))
    skipped = engine.pop_frames(2, render=False)
    assert [(f.index, f.image) for f in skipped] == [(0, None), (1, None)]
    assert skipped[0].motion is not None and skipped[0].motion.index == 0
    rendered = engine.pop_frames(1)
    assert rendered[0].index == 2 and rendered[0].image is not None
    StripesEngine.skippable = False
    try:
        engine.push_audio(block(6))
        assert all(f.image is not None for f in engine.pop_frames(render=False))  # renders anyway
    finally:
        StripesEngine.skippable = True


def test_clear_buffer_silences_held_audio_under_the_new_generation() -> None:
    engine = StripesEngine()
    for k in range(4):
        engine.push_audio(block(k, value=0.5))
    first = engine.pop_frames(1)[0]
    engine.clear_buffer(generation=3)
    assert engine.relaxed == 1
    engine.push_audio(block(4, generation=3))  # nothing new said: silence
    rest = engine.pop_frames()
    assert first.generation == 0 and first.audio.samples.any()
    assert [f.index for f in rest] == [1, 2] and all(f.generation == 3 for f in rest)
    assert not any(f.audio.samples.any() for f in rest)
    assert all(f.motion is not None and f.motion.speech == 0.0 for f in rest)


class OutOfOrderEngine(StripesEngine):
    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        frames = super()._take(limit, render)
        for f in frames:
            f.index += 1
        return frames


def test_an_engine_that_skips_a_frame_is_caught() -> None:
    engine = OutOfOrderEngine()
    for k in range(3):
        engine.push_audio(block(k))
    with pytest.raises(RuntimeError, match="emitted frame 1, expected 0"):
        engine.pop_frames()


def test_engines_register_by_name() -> None:
    assert {"warp", "aniportrait"} <= set(engine_names())  # the package's own entry points
    register_engine("stripes-by-path", "test_engine:stripes_factory")  # imported on first use
    engine = create_engine("stripes-by-path", None, 25, RenderSettings(size=16))
    assert isinstance(engine, StripesEngine) and (engine.fps, engine.size) == (25, 16)
    with pytest.raises(EngineError, match="engine 'nope' is not available .*warp") as err:
        create_engine("nope", None, 30, RenderSettings())
    assert err.value.code == "unsupported_engine"


async def test_the_server_serves_a_third_engine_without_an_edit(
    server: RunningServer, client: FacecastClient
) -> None:
    register_engine("stripes", stripes_factory)
    created = await client.create_session(engine="stripes")
    assert created["engine"] == "stripes" and created["size"] == server.registry.settings.render.size
    runtime = server.registry.get(created["id"]).runtime
    frames = runtime.add_output(QueueOutput())
    ws = await client.audio_socket(created["id"])
    await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
    await ws.send_bytes(pcm_s16le(np.full(16000 // 2, 0.3, np.float32)))
    await ws.send_json({"type": "end"})
    events = [(await asyncio.wait_for(ws.receive_json(), 10))["type"] for _ in range(3)]
    assert events == ["speaking_started", "speaking_stopped", "playback_finished"]
    seen = [await asyncio.wait_for(frames.get(), 5) for _ in range(5)]
    assert all(f.image[0, 0, 0] == f.index % 256 for f in seen)  # the engine's own pictures went out
    await ws.close()
