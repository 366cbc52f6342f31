"""Offline render: a speech file through the live path (20 ms chunks, as WebRTC delivers) into an MP4."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facecast.frames import AUDIO_RATE_HZ
from facecast.models.avatar import Avatar
from facecast.models.talking_head import TalkingHead
from facecast.stream.mp4_writer import Mp4Writer

CHUNK_SAMPLES = AUDIO_RATE_HZ // 50  # 20 ms, the size of a WebRTC audio packet


def render_frames(
    head: TalkingHead, audio: np.ndarray, progress: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """Push audio in 20 ms chunks, flush; returns one image per video frame (ceil(duration * fps))."""
    images: list[np.ndarray] = []
    for start in range(0, len(audio), CHUNK_SAMPLES):
        images.extend(f.image for f in head.push(audio[start : start + CHUNK_SAMPLES]))
        if progress:
            progress(min(CHUNK_SAMPLES, len(audio) - start))
    images.extend(f.image for f in head.flush())
    expected = -(-len(audio) * head.fps // AUDIO_RATE_HZ)
    return images[:expected]


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
    """Render and mux; writes `out` whole or not at all (temp file, then rename). Returns frame count."""
    head = TalkingHead(
        avatar, fps=fps, size=size, seed=seed, pose_template=pose_template, head_motion=head_motion
    )
    tmp = out.with_name(f".{out.name}.part")
    try:
        with Mp4Writer(tmp, fps=fps, size=head.size) as writer:
            writer.write_audio(audio)
            n = 0
            for start in range(0, len(audio), CHUNK_SAMPLES):
                for frame in head.push(audio[start : start + CHUNK_SAMPLES]):
                    writer.write_video(frame.index, frame.image)
                    n += 1
                if progress:
                    progress(min(CHUNK_SAMPLES, len(audio) - start))
            expected = -(-len(audio) * fps // AUDIO_RATE_HZ)
            for frame in head.flush():
                if frame.index < expected:
                    writer.write_video(frame.index, frame.image)
                    n += 1
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return n
