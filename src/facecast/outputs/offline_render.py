"""Offline render: a speech file through an engine, as the live runner feeds it, into an MP4 output (or,
with `transparent`, a WebM/MOV with the person's alpha: outputs/alpha_writer.py), or, frame by frame
(`rendered_frames`), anywhere else (`facecast render --push`: cli/render_push.py).

The audio goes in frame by frame as AudioBlocks (what the engine runner takes from a session's queue),
silence-padded past the end until every frame that shows the speech is out; frames are taken a batch at a
time, so an engine with an executor (the warp engine) renders a batch in parallel while the encoder works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from facecast.engine import Engine
from facecast.frames import EngineFrame, clip_block, frame_samples, frames_covering
from facecast.outputs.alpha_writer import AlphaVideoOutput
from facecast.outputs.base import StaticHost
from facecast.outputs.mp4_writer import Mp4Output

BATCH_FRAMES = 8  # frames taken (and rendered in parallel) at a time


def rendered_frames(
    engine: Engine, audio: np.ndarray, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[EngineFrame, np.ndarray]]:
    """Every frame showing `audio` (float32 mono 16 kHz), in order, with exactly the samples of `audio` it
    covers (the last frame's end where `audio` does). progress(samples) after each block pushed."""
    expected = frames_covering(len(audio), engine.fps)
    k = made = 0
    while made < expected:
        if k > expected + engine.lookahead_frames + BATCH_FRAMES:
            raise RuntimeError(f"the engine gave {made} of {expected} frames for {k} frames of audio")
        for _ in range(BATCH_FRAMES):
            start, end = frame_samples(k, engine.fps)
            engine.push_audio(clip_block(audio, k, engine.fps))
            k += 1
            if progress and start < len(audio):
                progress(min(end, len(audio)) - start)
        for frame in engine.pop_frames():
            if frame.index >= expected or frame.image is None:
                continue
            first = frame_samples(frame.index, engine.fps)[0]
            made += 1
            yield frame, frame.audio.samples[: len(audio) - first]


def render_to_file(
    engine: Engine,
    audio: np.ndarray,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
    transparent: bool = False,
) -> int:
    """Render `audio` (float32 mono 16 kHz) with `engine` into `out`, written whole or not at all.

    The file's audio is exactly `audio`; returns the frame count. progress(samples) after each block.
    transparent: `out` is a .webm or .mov carrying the frames' alpha (the engine renders with a matte).
    """
    mp4: Mp4Output | AlphaVideoOutput = AlphaVideoOutput(out) if transparent else Mp4Output(out)
    mp4.start(StaticHost(engine.fps, engine.size))
    try:
        for frame, samples in rendered_frames(engine, audio, progress):
            assert frame.image is not None  # rendered_frames hands out rendered frames only
            if isinstance(mp4, AlphaVideoOutput):
                if frame.alpha is None:
                    raise RuntimeError("a transparent render needs an engine rendering with a matte")
                mp4.write(frame.index, frame.image, frame.alpha, samples)
            else:
                mp4.write(frame.index, frame.image, samples)
    except BaseException:
        mp4.fail("render failed")
        mp4.stop()
        raise
    mp4.stop()
    return mp4.frames
