"""AniPortraitHead: one live session on the AniPortrait GPU engine (the runner's TalkingEngine).

    audio 16 kHz ─► StreamingAudio2Mesh ─► MotionFrame (mesh offsets, speech)
        ─► MotionComposer (blinks; head pose: template or procedural sway + nods, or
            StreamingAudio2Pose: Audio2Pose decoded incrementally with a fixed style id)
        ─► avatar.mesh + offsets ─► project_points(mesh, avatar.matrix, pose, W, H) ─► draw_pose_image
        ─► Lmk2VideoStream.push (shared StreamingLmk2Video, 16-frame causal windows) ─► VideoFrames

Frames leave one per push (the runner pushes one video frame of audio per tick) from an output queue
that the renderer fills a window at a time, so the session's frame k always pairs with audio chunk k.
Audio runs in blocks of the renderer's hop, aligned with its windows (one wav2vec2 pass per window). An
interrupt turns every frame not yet shown into a relaxed-mouth frame: the renderer's buffered poses are
dropped (`reset`) and those frames are redrawn from the silenced audio, keeping their head pose and blinks.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, Protocol

import cv2
import numpy as np

from facecast.frames import MotionFrame, VideoFrame
from facecast.models.aniportrait.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.audio2pose import Audio2Pose
from facecast.models.aniportrait.streaming_audio import StreamingAudio2Mesh, StreamingAudio2Pose
from facecast.models.avatar import Avatar
from facecast.models.face.pose_image import draw_pose_image
from facecast.models.face.projection import project_points
from facecast.models.face.rig import FaceRig
from facecast.models.motion.composer import MotionComposer


class PoseVideoStream(Protocol):
    """One session's stream on the shared renderer (streaming_lmk2video.Lmk2VideoStream)."""

    latency_frames: int

    def push(self, pose_image: np.ndarray) -> list[tuple[int, np.ndarray]]: ...
    def flush(self) -> list[tuple[int, np.ndarray]]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class PoseVideoRenderer(Protocol):
    """The per-device renderer shared by all sessions (streaming_lmk2video.StreamingLmk2Video)."""

    def open_stream(self, ref_image: np.ndarray, *, avatar_key: str, seed: int = 0) -> PoseVideoStream: ...


def reference_image(avatar: Avatar, size: int) -> np.ndarray:
    """The avatar's crop at the output size: (size, size, 3) uint8 RGB."""
    if avatar.image.shape[:2] == (size, size):
        return avatar.image
    shrink = avatar.image.shape[0] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(avatar.image, (size, size), interpolation=interp), dtype=np.uint8)


class AniPortraitHead:
    """push(audio float32 mono 16 kHz) → VideoFrames (size x size RGB), consecutive indices from 0.

    lookahead_frames = audio look-ahead + the renderer stream's latency (window fill). Not
    thread-safe: the engine runner owns threading (the shared renderer is thread-safe).
    """

    def __init__(
        self,
        avatar: Avatar,
        renderer: PoseVideoRenderer,
        audio_model: Audio2Mesh,
        *,
        size: int,
        fps: int = 30,
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
        self.fps = fps
        self.size = size
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
        self.lookahead_frames = self.driver.lookahead_frames + int(self.stream.latency_frames)
        self._mesh = np.asarray(avatar.mesh, np.float64)
        self._in_stream: deque[MotionFrame] = deque()  # poses pushed, frames not yet back
        self._ready: deque[VideoFrame] = deque()
        self.frames_in = 0
        self._finalizer = weakref.finalize(self, self.stream.close)

    # -- TalkingEngine ---------------------------------------------------------------------------
    def push(self, audio: np.ndarray) -> list[VideoFrame]:
        """Feed audio; returns at most one frame (the next in order), once the pipeline has filled."""
        poses = self.pose_driver.push(audio) if self.pose_driver is not None else []
        self._compose(self.driver.push(audio), poses)
        return [self._ready.popleft()] if self._ready else []

    def flush(self) -> list[VideoFrame]:
        """End of input: every remaining frame (the audio look-ahead padded with silence)."""
        poses = self.pose_driver.flush() if self.pose_driver is not None else []
        self._compose(self.driver.flush(), poses)
        self._collect(self.stream.flush())
        out = list(self._ready)
        self._ready.clear()
        return out

    def interrupt(self) -> None:
        """Audio not yet shown becomes silence; frames not yet shown are redrawn from it (relaxed mouth).

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
        """Release this session's stream on the shared renderer (also done when the head is collected)."""
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
        self.frames_in += 1
        self._collect(self.stream.push(self.pose_image(motion)))

    def _collect(self, outputs: list[tuple[int, np.ndarray]]) -> None:
        """Renderer outputs come in push order; pair each with the motion it was drawn from."""
        for _, image in outputs:
            motion = self._in_stream.popleft()
            self._ready.append(VideoFrame(index=motion.index, image=image, motion=motion))
