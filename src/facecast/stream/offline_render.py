"""Offline render: a speech file through the live path (20 ms chunks, as WebRTC delivers) into an MP4."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facecast.frames import AUDIO_RATE_HZ, MotionFrame
from facecast.models.avatar import Avatar
from facecast.models.talking_head import TalkingHead
from facecast.stream.mp4_writer import mp4_file

CHUNK_SAMPLES = AUDIO_RATE_HZ // 50  # 20 ms, the size of a WebRTC audio packet
BATCH_FRAMES = 8  # frames rendered in parallel per batch


def render_to_mp4(
    avatar: Avatar,
    audio: np.ndarray,
    out: Path,
    *,
    fps: int = 30,
    size: int | None = None,
    seed: int = 0,
    pose_template: np.ndarray | None = None,
    head_motion: bool = True,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Render and mux; writes `out` whole or not at all. Returns the frame count.

    Motion is computed chunk by chunk exactly as live; the images of a few frames at a time are rendered
    on a thread pool (OpenCV releases the GIL) while the encoder works.
    """
    expected = -(-len(audio) * fps // AUDIO_RATE_HZ)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        head = TalkingHead(
            avatar, fps=fps, size=size, seed=seed, pose_template=pose_template, head_motion=head_motion,
            executor=pool,
        )  # fmt: skip
        with mp4_file(out, fps=fps, size=head.size) as writer:
            writer.write_audio(audio)
            pending: list[MotionFrame] = []
            for start in range(0, len(audio), CHUNK_SAMPLES):
                pending += head.motions(audio[start : start + CHUNK_SAMPLES])
                if len(pending) >= BATCH_FRAMES:
                    for frame in head.render(pending):
                        writer.write_video(frame.index, frame.image)
                    pending = []
                if progress:
                    progress(min(CHUNK_SAMPLES, len(audio) - start))
            pending += head.flush_motions()
            for frame in head.render([m for m in pending if m.index < expected]):
                writer.write_video(frame.index, frame.image)
            written = writer.frames_written
    return written
