"""Build the engine for a session (imported lazily: the server starts without loading models).

"warp": the CPU warp renderer, one independent TalkingHead per session. "aniportrait": AniPortraitHead
sessions on a StreamingLmk2Video and an Audio2Mesh that are loaded once per process (per weights
folder and render settings) and shared by every session.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from facecast.config import RenderSettings
from facecast.server.errors import ApiError
from facecast.stream.engine_runner import TalkingEngine

ENGINES = ("warp", "aniportrait")
FPS_CHOICES = (25, 30)
ANIPORTRAIT_FPS = 30  # Audio2Mesh's frame rate

_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_LOCK = threading.Lock()


def _pose_template(render: RenderSettings) -> Any:
    if not render.pose_template:
        return None
    from facecast.models.motion.pose_template import PoseTemplateError, load_pose_template

    try:
        return load_pose_template(Path(render.pose_template))
    except PoseTemplateError as exc:
        raise ApiError(400, "bad_pose_template", str(exc)) from None


def build_engine(avatar: Any, engine: str, fps: int, render: RenderSettings) -> TalkingEngine:
    if engine not in ENGINES:
        raise ApiError(
            400, "unsupported_engine", f"engine '{engine}' is not available (available: {', '.join(ENGINES)})"
        )
    if fps not in FPS_CHOICES:
        raise ApiError(400, "bad_fps", f"fps must be one of {', '.join(map(str, FPS_CHOICES))}")
    if engine == "aniportrait":
        return build_aniportrait(avatar, fps, render)
    from facecast.models.talking_head import TalkingHead

    head: TalkingEngine = TalkingHead(
        avatar,
        fps=fps,
        size=render.size,
        seed=render.seed,
        pose_template=_pose_template(render),
        head_motion=render.head_motion,
    )
    return head


def aniportrait_weights(render: RenderSettings) -> Path:
    """The configured weights folder; ApiError (one sentence) when none is set or it does not exist."""
    if not render.weights:
        raise ApiError(
            400,
            "engine_unavailable",
            "engine 'aniportrait' needs AniPortrait weights: start the server with --weights DIR "
            "(or set render.weights in the config)",
        )
    path = Path(render.weights).expanduser()
    if not path.is_dir():
        raise ApiError(400, "engine_unavailable", f"AniPortrait weights folder {path} does not exist")
    return path.resolve()


def _shared(key: tuple[Any, ...], make: Any) -> Any:
    """One instance per key for the whole process (built once even when sessions start together)."""
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make()
        return _SHARED[key]


def shared_aniportrait(render: RenderSettings) -> tuple[Any, Any, Any]:
    """(StreamingLmk2Video, Audio2Mesh, Audio2Pose or None) for these settings, loaded once and then reused."""
    from facecast.models.aniportrait.checkpoint import WeightsError

    weights = aniportrait_weights(render)
    try:
        renderer = _shared(
            ("lmk2video", str(weights), render.size, render.steps, render.hop, render.guidance,
             render.device, render.dtype, render.seed, render.tiny_vae, render.compile),
            lambda: _make_renderer(weights, render),
        )  # fmt: skip
        audio = _shared(("audio2mesh", str(weights), render.device), lambda: _make_audio(weights, render))
        pose = None
        if render.pose_style is not None:
            pose = _shared(
                ("audio2pose", str(weights), render.device), lambda: _make_audio(weights, render, True)
            )
    except WeightsError as exc:
        raise ApiError(400, "engine_unavailable", f"cannot load AniPortrait weights: {exc}") from None
    except ValueError as exc:  # settings the engine cannot use (size not a multiple of 8, hop > window, ...)
        raise ApiError(400, "engine_unavailable", f"cannot start engine 'aniportrait': {exc}") from None
    return renderer, audio, pose


def _make_renderer(weights: Path, render: RenderSettings) -> Any:
    from facecast.models.aniportrait.streaming_lmk2video import StreamingLmk2Video

    return StreamingLmk2Video(
        weights,
        width=render.size,
        height=render.size,
        steps=render.steps,
        hop=render.hop,
        guidance=render.guidance,
        device=render.device,
        dtype=render.dtype,
        seed=render.seed,
        tiny_vae=Path(render.tiny_vae).expanduser() if render.tiny_vae else None,
        compile=render.compile,
    )


def _make_audio(weights: Path, render: RenderSettings, pose: bool = False) -> Any:
    import torch

    from facecast.models.aniportrait.audio_weights import load_audio2mesh, load_audio2pose

    device = render.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_audio2pose(weights, device) if pose else load_audio2mesh(weights, device)


def build_aniportrait(avatar: Any, fps: int, render: RenderSettings) -> TalkingEngine:
    if fps != ANIPORTRAIT_FPS:
        raise ApiError(400, "bad_fps", f"engine 'aniportrait' runs at {ANIPORTRAIT_FPS} fps only")
    if render.pose_style is not None and not 0 <= render.pose_style < 100:
        raise ApiError(
            400, "bad_pose_style", f"pose_style must be an Audio2Pose style id 0..99, not {render.pose_style}"
        )
    from facecast.models.aniportrait.head import AniPortraitHead

    renderer, audio, pose = shared_aniportrait(render)
    head: TalkingEngine = AniPortraitHead(
        avatar,
        renderer,
        audio,
        size=render.size,
        fps=fps,
        seed=render.seed,
        pose_template=_pose_template(render),
        head_motion=render.head_motion,
        lookahead_s=render.audio_lookahead_s,
        left_context_s=render.left_context_s,
        pose_model=pose,
        pose_style=render.pose_style or 0,
    )
    return head
