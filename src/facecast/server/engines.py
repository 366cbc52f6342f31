"""Build the engine for a session (imported lazily: the server starts without loading models)."""

from __future__ import annotations

from typing import Any

from facecast.config import RenderSettings
from facecast.server.errors import ApiError
from facecast.stream.engine_runner import TalkingEngine

ENGINES = ("warp",)
FPS_CHOICES = (25, 30)


def build_engine(avatar: Any, engine: str, fps: int, render: RenderSettings) -> TalkingEngine:
    if engine not in ENGINES:
        raise ApiError(
            400, "unsupported_engine", f"engine '{engine}' is not available (available: {', '.join(ENGINES)})"
        )
    if fps not in FPS_CHOICES:
        raise ApiError(400, "bad_fps", f"fps must be one of {', '.join(map(str, FPS_CHOICES))}")
    from facecast.models.talking_head import TalkingHead

    pose = None
    if render.pose_template:
        import numpy as np

        pose = np.load(render.pose_template)
    head: TalkingEngine = TalkingHead(
        avatar,
        fps=fps,
        size=render.size,
        seed=render.seed,
        pose_template=pose,
        head_motion=render.head_motion,
    )
    return head
