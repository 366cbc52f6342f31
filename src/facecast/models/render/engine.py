"""The warp engine (default, CPU, no weights): motion driver → composer → warp renderer, per session.

    AudioBlock ─► DspMotionDriver ─► MotionFrame (mouth) ─► MotionComposer (pose, blinks, idle sway)
        ─► queue of composed motion ─► WarpRenderer ─► frame (image + its audio)

Motion is cheap and stateful, images are the cost: `_advance` composes motion as audio arrives and
`_take` renders, so the engine is skippable (an overloaded live worker leaves images out and motion
and audio keep time), and an offline render draws a batch of frames in parallel on an executor.
The same object serves live sessions and offline renders, so a file shows what a live viewer sees.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np

from facecast.engine import Engine, EngineError
from facecast.frames import MotionFrame, VideoFrame
from facecast.models.audio.dsp_driver import DspMotionDriver
from facecast.models.avatar import Avatar
from facecast.models.face.rig import Expression, FaceRig
from facecast.models.motion.composer import MotionComposer
from facecast.models.motion.pose_template import configured_template
from facecast.models.render.background import Background, BackgroundError, parse_background
from facecast.models.render.warp import WarpRenderer

if TYPE_CHECKING:
    from facecast.config import RenderSettings


class WarpEngine(Engine):
    """One session on the warp renderer; frame k is out once audio up to frame k + 1 + lookahead is in."""

    skippable = True

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
        background: Background | None = None,
    ) -> None:
        self.executor = executor  # renders the frames of one _take in parallel (offline renders)
        self.rig = FaceRig(avatar.mesh)
        self.driver = DspMotionDriver(self.rig, fps)
        self.composer = MotionComposer(
            self.rig, fps, seed=seed, pose_template=pose_template, head_motion=head_motion
        )
        self.renderer = WarpRenderer(avatar, size, self.rig, background)
        super().__init__(fps=fps, size=self.renderer.size, lookahead_frames=self.driver.lookahead_frames)
        self.transparent = self.renderer.background.kind == "transparent"
        self._motions: deque[MotionFrame] = deque()  # composed, not yet taken

    def _advance(self, samples: np.ndarray) -> None:
        self._motions.extend(self.composer.compose(m) for m in self.driver.push(samples))

    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        count = len(self._motions) if limit is None else min(limit, len(self._motions))
        motions = [self._motions.popleft() for _ in range(count)]
        if not render:
            return list(motions)
        return list(self.render(motions))

    def _relax(self) -> None:
        self.driver.interrupt()  # audio it holds beyond the next frame becomes silence, the mouth relaxes
        rest = self.rig.offsets(Expression())
        for m in self._motions:  # composed from speech but not shown: closed mouth, same pose and blink
            m.mesh_offsets = rest + (m.blink * self.rig.blink).astype(np.float32)
            m.speech = 0.0

    def render(self, motions: list[MotionFrame]) -> list[VideoFrame]:
        """Images for composed motion frames; in parallel on the executor when one is given."""
        if self.executor is not None and len(motions) > 1:
            layers = list(self.executor.map(self.renderer.render_layers, motions))
        else:
            layers = [self.renderer.render_layers(m) for m in motions]
        return [VideoFrame(m.index, img, m, alpha) for m, (img, alpha) in zip(motions, layers, strict=True)]


def create_warp_engine(avatar: Avatar, fps: int, render: RenderSettings) -> WarpEngine:
    """The `warp` entry point (facecast.engine registry)."""
    try:
        background = parse_background(render.background)
    except BackgroundError as exc:  # from the server's config (a session's own is checked by the API)
        raise EngineError("bad_background", str(exc)) from None
    return WarpEngine(
        avatar,
        fps=fps,
        size=render.size,
        seed=render.seed,
        pose_template=configured_template(render.pose_template),
        head_motion=render.head_motion,
        background=background,
    )
