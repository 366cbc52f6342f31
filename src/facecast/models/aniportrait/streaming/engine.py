"""AniPortraitEngine: one live session on the AniPortrait GPU engine (facecast.engine.Engine).

    AudioBlock ─► StreamingAudio2Mesh (audio.py) ─► MotionFrame (mesh offsets, speech)
        ─► MotionComposer (blinks; head pose: template or procedural sway + nods, or
            StreamingAudio2Pose: Audio2Pose decoded incrementally with a fixed style id)
        ─► avatar.mesh + offsets ─► project_points(mesh, avatar.matrix, pose, W, H) ─► draw_pose_image
        ─► Lmk2VideoStream.push (lmk2video.py: a shared StreamingLmk2Video, 16-frame causal windows)
        ─► frames, in order

The renderer fills an output queue a window at a time, and the engine base class pairs each frame with
its AudioBlock. Audio runs in blocks of the renderer's hop, aligned with its windows (one wav2vec2 pass per
window). An interrupt (`_relax`) turns every frame not yet out into a relaxed-mouth frame: the renderer's
buffered poses are dropped (`reset`) and those frames are redrawn from the silenced audio, keeping their
head pose and blinks.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facecast.engine import Engine, EngineError
from facecast.frames import MotionFrame, VideoFrame
from facecast.models.aniportrait.entry import ANIPORTRAIT_FPS, aniportrait_weights, check_settings
from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import Audio2Pose
from facecast.models.aniportrait.streaming.audio import StreamingAudio2Mesh, StreamingAudio2Pose
from facecast.models.aniportrait.streaming.lmk2video import StreamingLmk2Video
from facecast.models.avatar import Avatar
from facecast.models.face.pose_image import draw_pose_image
from facecast.models.face.projection import project_points
from facecast.models.face.rig import FaceRig
from facecast.models.motion.composer import MotionComposer
from facecast.models.motion.pose_template import configured_template

if TYPE_CHECKING:
    from facecast.config import RenderSettings


def reference_image(avatar: Avatar, size: int) -> np.ndarray:
    """The avatar's crop at the output size: (size, size, 3) uint8 RGB."""
    if avatar.image.shape[:2] == (size, size):
        return avatar.image
    shrink = avatar.image.shape[0] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(avatar.image, (size, size), interpolation=interp), dtype=np.uint8)


class AniPortraitEngine(Engine):
    """One session on a shared StreamingLmk2Video: size x size RGB frames at 30 fps.

    lookahead_frames = audio look-ahead + the renderer stream's latency (window fill). Not thread-safe: the
    engine runner owns threading (the shared renderer is thread-safe).
    """

    def __init__(
        self,
        avatar: Avatar,
        renderer: StreamingLmk2Video,
        audio_model: Audio2Mesh,
        *,
        size: int,
        fps: int = ANIPORTRAIT_FPS,
        seed: int = 0,
        pose_template: np.ndarray | None = None,
        head_motion: bool = True,
        lookahead_s: float = 0.2,
        left_context_s: float = 2.0,
        pose_model: Audio2Pose | None = None,
        pose_style: int = 0,
        audio_block_frames: int | None = None,
    ) -> None:
        self.avatar = avatar
        self.stream = renderer.open_stream(
            reference_image(avatar, size), avatar_key=f"{avatar.id or 'avatar'}@{size}", seed=seed
        )
        # Audio in blocks of the renderer's hop, aligned with its windows: one wav2vec2 pass per window, no delay.
        block = audio_block_frames or int(self.stream.latency_frames)
        audio: dict[str, Any] = {
            "fps": fps,
            "lookahead_s": lookahead_s,
            "left_context_s": left_context_s,
            "block_frames": block,
        }
        self.driver = StreamingAudio2Mesh(audio_model, **audio)
        self.pose_driver: StreamingAudio2Pose | None = None
        if pose_model is not None and head_motion:
            self.pose_driver = StreamingAudio2Pose(pose_model, style_id=pose_style, **audio)
        self.rig = FaceRig(avatar.mesh)
        self.composer = MotionComposer(
            self.rig, fps, seed=seed, pose_template=pose_template, head_motion=head_motion
        )
        lookahead = self.driver.lookahead_frames + int(self.stream.latency_frames)
        super().__init__(fps=fps, size=size, lookahead_frames=lookahead)
        self._mesh = np.asarray(avatar.mesh, np.float64)
        self._in_stream: deque[MotionFrame] = deque()  # poses pushed, frames not yet back
        self._ready: deque[VideoFrame] = deque()
        self._finalizer = weakref.finalize(self, self.stream.close)

    # -- Engine ----------------------------------------------------------------------------------
    def _advance(self, samples: np.ndarray) -> None:
        poses = self.pose_driver.push(samples) if self.pose_driver is not None else []
        self._compose(self.driver.push(samples), poses)

    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        count = len(self._ready) if limit is None else min(limit, len(self._ready))
        return [self._ready.popleft() for _ in range(count)]

    def _relax(self) -> None:
        """Frames not yet out are redrawn from the silenced audio (relaxed mouth).

        Their head pose and blinks stay as composed, so the head does not jump; the renderer drops the
        poses it had buffered and continues from the frames already shown.
        """
        redo = [f.motion for f in self._ready if f.motion is not None] + list(self._in_stream)
        self._ready.clear()
        self._in_stream.clear()
        self.stream.reset()
        start = redo[0].index if redo else self.driver.next_index
        fresh = {m.index: m for m in self.driver.interrupt(rewind_to=start)}
        if self.pose_driver is not None:
            self.pose_driver.interrupt(rewind_to=start)
        for motion in redo:
            offsets = fresh[motion.index].mesh_offsets + motion.blink * self.rig.blink
            motion.mesh_offsets = offsets.astype(np.float32)
            motion.speech = 0.0
            self._feed(motion)

    def close(self) -> None:
        """Release this session's stream on the shared renderer (also done when the engine is collected)."""
        self._finalizer()

    # -- pieces ----------------------------------------------------------------------------------
    def pose_image(self, motion: MotionFrame) -> np.ndarray:
        """Mesh + offsets posed and projected into the output frame, drawn as AniPortrait does. (S, S, 3) uint8."""
        mesh = self._mesh + motion.mesh_offsets
        points = project_points(mesh[None], self.avatar.matrix, motion.pose[None], self.size, self.size)[0]
        return draw_pose_image(points, self.size, self.size, normalized=False)

    def _compose(self, motions: list[MotionFrame], poses: list[tuple[int, np.ndarray]]) -> None:
        """Blinks (and procedural/template pose) from the composer; Audio2Pose's pose when it runs."""
        by_index = dict(poses)
        for motion in motions:
            composed = self.composer.compose(motion)
            if self.pose_driver is not None:
                composed.pose = by_index[motion.index]  # both drivers share windows: same frames per push
            self._feed(composed)

    def _feed(self, motion: MotionFrame) -> None:
        self._in_stream.append(motion)
        for _, image in self.stream.push(self.pose_image(motion)):  # outputs come in push order
            done = self._in_stream.popleft()
            self._ready.append(VideoFrame(done.index, image, done))


# -- the `aniportrait` entry point: networks loaded once per process, shared by every session --------
_shared: dict[tuple[Any, ...], Any] = {}
_shared_lock = threading.Lock()


def _once(key: tuple[Any, ...], make: Any) -> Any:
    """One instance per key for the whole process (built once even when sessions start together)."""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = make()
        return _shared[key]


def shared_models(render: RenderSettings) -> tuple[StreamingLmk2Video, Audio2Mesh, Audio2Pose | None]:
    """(StreamingLmk2Video, Audio2Mesh, Audio2Pose or None) for these settings, loaded once and then reused."""
    import torch

    from facecast.models.aniportrait.networks.audio_weights import load_audio2mesh, load_audio2pose
    from facecast.models.aniportrait.networks.checkpoint import WeightsError

    weights = aniportrait_weights(render)
    device = render.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        renderer = _once(
            ("lmk2video", str(weights), render.size, render.steps, render.hop, render.guidance,
             render.device, render.dtype, render.seed, render.tiny_vae, render.compile),
            lambda: StreamingLmk2Video(
                weights, width=render.size, height=render.size, steps=render.steps, hop=render.hop,
                guidance=render.guidance, device=render.device, dtype=render.dtype, seed=render.seed,
                tiny_vae=Path(render.tiny_vae).expanduser() if render.tiny_vae else None,
                compile=render.compile,
            ),
        )  # fmt: skip
        audio = _once(("audio2mesh", str(weights), device), lambda: load_audio2mesh(weights, device))
        pose = None
        if render.pose_style is not None:
            pose = _once(("audio2pose", str(weights), device), lambda: load_audio2pose(weights, device))
    except WeightsError as exc:
        raise EngineError("engine_unavailable", f"cannot load AniPortrait weights: {exc}") from None
    except ValueError as exc:  # settings the engine cannot use (size not a multiple of 8, hop > window, ...)
        raise EngineError("engine_unavailable", f"cannot start engine 'aniportrait': {exc}") from None
    return renderer, audio, pose


def create_aniportrait_engine(avatar: Avatar, fps: int, render: RenderSettings) -> AniPortraitEngine:
    """The `aniportrait` entry point (facecast.engine registry)."""
    check_settings(fps, render)
    renderer, audio, pose = shared_models(render)
    return AniPortraitEngine(
        avatar,
        renderer,
        audio,
        size=render.size,
        fps=fps,
        seed=render.seed,
        pose_template=configured_template(render.pose_template),
        head_motion=render.head_motion,
        lookahead_s=render.audio_lookahead_s,
        left_context_s=render.left_context_s,
        pose_model=pose,
        pose_style=render.pose_style or 0,
    )
