"""The `aniportrait` engine's entry point (facecast.engine registry), light on purpose.

Building the engine imports torch, diffusers and transformers (10 s and 350 MB) and loads GBs of
weights. A session request that cannot succeed (no weights configured, a wrong frame rate) is
refused here first, in microseconds, before any of that is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from facecast.engine import EngineError

if TYPE_CHECKING:
    from facecast.config import RenderSettings
    from facecast.models.aniportrait.streaming.engine import AniPortraitEngine

ANIPORTRAIT_FPS = 30  # Audio2Mesh's frame rate


def check_settings(fps: int, render: RenderSettings) -> None:
    """EngineError (one sentence) for settings the engine can never run with."""
    if fps != ANIPORTRAIT_FPS:
        raise EngineError("bad_fps", f"engine 'aniportrait' runs at {ANIPORTRAIT_FPS} fps only")
    aniportrait_weights(render)
    if render.pose_style is not None and not 0 <= render.pose_style < 100:
        raise EngineError(
            "bad_pose_style", f"pose_style must be an Audio2Pose style id 0..99, not {render.pose_style}"
        )


def aniportrait_weights(render: RenderSettings) -> Path:
    """The configured weights folder; EngineError (one sentence) when none is set or it does not exist."""
    if not render.weights:
        raise EngineError(
            "engine_unavailable",
            "engine 'aniportrait' needs AniPortrait weights: start the server with --weights DIR "
            "(or set render.weights in the config)",
        )
    path = Path(render.weights).expanduser()
    if not path.is_dir():
        raise EngineError("engine_unavailable", f"AniPortrait weights folder {path} does not exist")
    return path.resolve()


def create_aniportrait_engine(avatar: Any, fps: int, render: RenderSettings) -> AniPortraitEngine:
    check_settings(fps, render)
    from facecast.models.aniportrait.streaming.engine import create_aniportrait_engine as create

    return create(avatar, fps, render)
