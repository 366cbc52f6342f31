"""Mouth opening per video frame, measured with mediapipe face mesh, independent of any driver.

The measure: mean distance between five facing inner-lip landmark pairs, divided by the distance
between the outer eye corners (33, 263), both in pixels. Dividing by the eye span makes it
independent of resolution and face size; about 0.0 for closed lips, 0.1-0.3 for speech.
Used by `facecast bench lipsync` and `facecast bench visemes`, and by the live-server tests on
recorded streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

# The measure itself lives with the portrait checks, which refuse a photo whose mouth is wide open.
from facecast.models.face.portrait_checks import mouth_opening

__all__ = [
    "MediaInputError",
    "MouthMeter",
    "MouthTrack",
    "mouth_opening",
    "track_mouth",
    "track_mouth_frames",
]


class MediaInputError(ValueError):
    """A file the bench tools cannot measure (missing, unreadable, no video or audio stream)."""


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth openings of a video.

    pts_s: (N,) float64 presentation time of each frame in seconds (container timeline).
    opening: (N,) float64 inner-lip opening / eye span; nan where no face was found.
    fps: nominal frame rate (from the median frame interval, else the stream's rate).
    """

    pts_s: np.ndarray
    opening: np.ndarray
    fps: float
    width: int
    height: int

    @property
    def frames(self) -> int:
        return int(self.opening.shape[0])

    @property
    def face_ratio(self) -> float:
        return float(np.mean(np.isfinite(self.opening))) if self.frames else 0.0

    def opening_at(self, times_s: np.ndarray) -> np.ndarray:
        """Opening of the frame on screen at each time (the last frame with pts <= t); nan outside."""
        times_s = np.asarray(times_s, dtype=np.float64)
        index = np.searchsorted(self.pts_s, times_s, side="right") - 1
        end = self.pts_s[-1] + 1.0 / self.fps if self.frames else 0.0
        valid = (index >= 0) & (times_s < end)
        out = np.full(times_s.shape, np.nan)
        out[valid] = self.opening[index[valid]]
        return out


class MouthMeter:
    """Measures the mouth opening of successive RGB frames of one video.

    Tracking mode (fast, temporally consistent) with a fresh static detection as fallback on
    frames where tracking finds no face, so a lost track costs one frame at most, never a run.
    """

    def __init__(self) -> None:
        import mediapipe as mp  # heavy: imported only when measuring

        from facecast.models.face.landmarks import native_logs_filtered

        # MediaPipe's native INFO/WARNING lines (graph start, first frames) stay off the terminal
        # while the meter lives; anything else written to stderr meanwhile comes out at close().
        self._quiet = ExitStack()
        self._quiet.enter_context(native_logs_filtered())
        face_mesh = mp.solutions.face_mesh
        self._tracker: Any = face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True
        )
        self._detector: Any = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True
        )

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """(478, 2) pixel landmarks of the face in an (H, W, 3) uint8 RGB frame, or None."""
        rgb = np.ascontiguousarray(rgb)
        result = self._tracker.process(rgb)
        if not result.multi_face_landmarks:
            result = self._detector.process(rgb)
        if not result.multi_face_landmarks:
            return None
        height, width = rgb.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * width, p.y * height) for p in points], dtype=np.float64)

    def measure(self, rgb: np.ndarray) -> float:
        """Mouth opening of one frame; nan when no face is found."""
        points = self.landmarks(rgb)
        return float("nan") if points is None else mouth_opening(points)

    def close(self) -> None:
        try:
            self._tracker.close()
            self._detector.close()
        finally:
            self._quiet.close()

    def __enter__(self) -> MouthMeter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_media(path: str | Path) -> Any:
    """av container for reading, or MediaInputError with one clear sentence."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaInputError(f"{path} does not exist or is not a file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaInputError(f"{path} is not a readable media file ({exc.__class__.__name__})") from exc


def nominal_fps(pts_s: np.ndarray, stream_rate: float | None) -> float:
    """Frame rate from the median frame interval (robust to a few dropped frames), else the stream's."""
    if pts_s.shape[0] >= 2:
        step = float(np.median(np.diff(pts_s)))
        if step > 0:
            return 1.0 / step
    return float(stream_rate) if stream_rate else 25.0


def track_mouth_frames(frames: Iterable[np.ndarray], pts_s: Iterable[float], fps: float) -> MouthTrack:
    """MouthTrack of in-memory (H, W, 3) uint8 RGB frames with their presentation times."""
    openings: list[float] = []
    height = width = 0
    with MouthMeter() as meter:
        for rgb in frames:
            height, width = rgb.shape[:2]
            openings.append(meter.measure(rgb))
    times = np.asarray(list(pts_s), dtype=np.float64)
    if times.shape[0] != len(openings):
        raise ValueError(f"{len(openings)} frames but {times.shape[0]} timestamps")
    return MouthTrack(times, np.asarray(openings, dtype=np.float64), fps, width, height)


def track_mouth(path: str | Path) -> MouthTrack:
    """Decode every frame of a video file and measure its mouth opening at the frame's pts."""
    import av

    container = open_media(path)
    with container:
        if not container.streams.video:
            raise MediaInputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        times: list[float] = []
        openings: list[float] = []
        rate = float(stream.average_rate) if stream.average_rate else None
        width = height = 0
        try:
            with MouthMeter() as meter:
                for index, frame in enumerate(container.decode(stream)):
                    # Frames without a pts (rare raw streams) fall back to their index at the nominal rate.
                    times.append(float(frame.time) if frame.time is not None else index / (rate or 25.0))
                    width, height = frame.width, frame.height
                    openings.append(meter.measure(frame.to_ndarray(format="rgb24")))
        except av.FFmpegError as exc:
            if not times:
                raise MediaInputError(f"{path}: the video stream cannot be decoded ({exc})") from exc
            # A truncated tail: keep what decoded, as players do.
    if not times:
        raise MediaInputError(f"{path} has a video stream without any decodable frame")
    pts = np.asarray(times, dtype=np.float64)
    order = np.argsort(pts, kind="stable")  # decoders emit in presentation order; be safe with odd muxers
    pts, opening = pts[order], np.asarray(openings, dtype=np.float64)[order]
    return MouthTrack(pts, opening, nominal_fps(pts, rate), width, height)
