"""One session's synchronous audio → video path: motion driver → composer → renderer.

The same object serves offline renders (fed 20 ms chunks from a file) and live sessions (fed whatever
arrives, silence when idle), so a file shows exactly what a live viewer would see.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np

from facecast.frames import MotionFrame, VideoFrame
from facecast.models.audio.dsp_driver import DspMotionDriver
from facecast.models.avatar import Avatar
from facecast.models.face.rig import FaceRig
from facecast.models.motion.composer import MotionComposer
from facecast.models.render.warp import WarpRenderer


class TalkingHead:
    """push(audio float32 mono 16 kHz) → VideoFrames, consecutive indices from 0.

    Frame k is emitted once audio up to frame_start_sample(k + 1 + lookahead_frames) has arrived.
    Not thread-safe: the engine runner owns threading.
    """

    # motions() alone keeps the motion state going, so a late live worker may skip render() for a
    # frame and repeat the previous image (facecast.stream.engine_runner's overload policy).
    frames_skippable = True

    def __init__(
        self,
        avatar: Avatar,
        *,
        fps: int = 30,
        size: int | None = None,
        seed: int = 0,
        pose_template: np.ndarray | None = None,
        head_motion: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self.fps = fps
        self.executor = executor  # renders several frames of one push in parallel (offline renders)
        rig = FaceRig(avatar.mesh)
        self.driver = DspMotionDriver(rig, fps)
        self.composer = MotionComposer(
            rig, fps, seed=seed, pose_template=pose_template, head_motion=head_motion
        )
        self.renderer = WarpRenderer(avatar, size)
        self.size = self.renderer.size
        self.lookahead_frames = self.driver.lookahead_frames

    def motions(self, audio: np.ndarray) -> list[MotionFrame]:
        """Driver and composer only (cheap, stateful, in order); `render` makes the images."""
        return [self.composer.compose(m) for m in self.driver.push(audio)]

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        """Images for composed motion frames; in parallel on the executor when one is given."""
        if self.executor is not None and len(motions) > 1:
            images = list(self.executor.map(self.renderer.render, motions))
        else:
            images = [self.renderer.render(m) for m in motions]
        return [
            VideoFrame(index=m.index, image=img, motion=m) for m, img in zip(motions, images, strict=True)
        ]

    def push(self, audio: np.ndarray) -> list[VideoFrame]:
        return self.render(self.motions(audio))

    def flush_motions(self) -> list[MotionFrame]:
        """End of a file: the remaining composed motion frames, padding the audio with silence."""
        return [self.composer.compose(m) for m in self.driver.flush()]

    def flush(self) -> list[VideoFrame]:
        """End of a file: the remaining frames."""
        return self.render(self.flush_motions())

    def interrupt(self) -> None:
        """Audio pushed but not yet shown becomes silence; the next frame out has a relaxed mouth."""
        self.driver.interrupt()
