"""AniPortrait head-pose templates: (N, 6) .npy of [rx, ry, rz (deg), tx, ty, tz] at 30 fps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEMPLATE_FPS = 30


class PoseTemplateError(ValueError):
    """The pose template file is unusable (one clear sentence)."""


def load_pose_template(path: Path) -> np.ndarray:
    try:
        poses = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PoseTemplateError(f"pose template {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise PoseTemplateError(f"pose template {path} is not a readable .npy array ({exc})") from None
    if poses.ndim != 2 or poses.shape[1] != 6 or len(poses) == 0:
        raise PoseTemplateError(f"pose template {path} must be an (N, 6) array, got shape {poses.shape}")
    if not np.isfinite(poses).all():
        raise PoseTemplateError(f"pose template {path} contains NaN or infinite values")
    return poses.astype(np.float32)


def ping_pong_index(i: int, n: int) -> int:
    """Row of frame i when a template of n rows plays 0, 1, …, n-1, n-2, …, 1 and repeats.

    AniPortrait's pose_temp: mirrored without repeating the end rows, so the head never jumps or stalls.
    """
    if n <= 2:
        return i % n
    period = 2 * n - 2
    j = i % period
    return j if j < n else period - j


def ping_pong_poses(template: np.ndarray, frames: int) -> np.ndarray:
    """(N, 6) template → (frames, 6) poses, mirrored and tiled like AniPortrait."""
    return np.asarray(template)[[ping_pong_index(i, len(template)) for i in range(frames)]]


def configured_template(path: str | None) -> np.ndarray | None:
    """An engine's pose template setting (render.pose_template): the poses, or None when unset.

    An unusable file is an EngineError, so the server answers it as a bad request in one sentence.
    """
    from facecast.engine import EngineError

    if not path:
        return None
    try:
        return load_pose_template(Path(path))
    except PoseTemplateError as exc:
        raise EngineError("bad_pose_template", str(exc)) from None
