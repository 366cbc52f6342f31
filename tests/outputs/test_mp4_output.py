"""The MP4 output and the recorder built on it: what a viewer saw, stale speech left out, whole or absent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine
from facecast.outputs.base import OutputState, StaticHost
from facecast.outputs.mp4_writer import Mp4Output
from facecast.outputs.queues import QueueOutput
from facecast.outputs.recorder import Recorder
from facecast.stream.clock import FreeRunningClock
from facecast.stream.session import SessionRuntime


def read(path: Path) -> tuple[int, np.ndarray]:
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio


def test_stale_frames_show_no_video_and_play_silence(tmp_path: Path) -> None:
    out = Mp4Output(tmp_path / "clip.mp4")
    out.start(StaticHost(fps=25, size=32))
    image, tone = np.full((32, 32, 3), 128, np.uint8), np.full(640, 0.5, np.float32)
    out.write(0, image, tone, stale=True)  # before the first fresh frame: not in the file at all
    for k in range(1, 26):
        out.write(k, image, tone, stale=10 <= k < 20)
    assert not (tmp_path / "clip.mp4").exists()  # only a finished file takes its name
    out.stop()
    frames, audio = read(tmp_path / "clip.mp4")
    assert frames == out.frames == 15 and out.state is OutputState.STOPPED
    assert audio.size == pytest.approx(25 * 640, abs=1024)
    rms = [float(np.sqrt(np.mean(audio[i * 640 : (i + 1) * 640] ** 2))) for i in range(24)]
    assert min(rms[10:18]) < 0.01 < 0.3 < min(rms[1:8])  # frames 11..19 of the session are silent


def test_a_failed_output_leaves_no_file(tmp_path: Path) -> None:
    out = Mp4Output(tmp_path / "clip.mp4")
    out.start(StaticHost(fps=30, size=32))
    out.write(0, np.zeros((32, 32, 3), np.uint8), np.zeros(533, np.float32))
    out.fail("disk full")
    out.stop()
    assert list(tmp_path.iterdir()) == [] and out.state is OutputState.FAILED


async def test_the_recorder_writes_exactly_the_session_frames(avatar: Avatar, tmp_path: Path) -> None:
    session = SessionRuntime(WarpEngine(avatar, fps=30, size=64), clock=FreeRunningClock(30))
    recorder = session.add_output(Recorder(tmp_path / "rec" / "session.mp4"))
    seen = session.add_output(QueueOutput())
    session.start()
    frames = [await asyncio.wait_for(seen.get(), 5) for _ in range(40)]
    session.remove_output(recorder)
    await asyncio.to_thread(recorder.finish)
    await session.close()
    count, audio = read(recorder.path)
    assert recorder.error is None and recorder.state is OutputState.STOPPED
    assert count == recorder.frames >= 40 and frames[0].index == 0
    assert recorder.stats()["frames"] == recorder.frames
    # Audio packets: AAC frames of 1024 samples, each stamped exactly one frame after the last.
    with av.open(str(recorder.path)) as c:
        pts = [p.pts for p in c.demux(audio=0) if p.pts is not None]
    assert len(pts) > 10 and set(np.diff(pts).tolist()) == {1024}
