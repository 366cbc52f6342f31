"""Face landmarks with MediaPipe's face mesh (the model bundled in the mediapipe wheel, 478 points)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

NUM_LANDMARKS = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)

# One MediaPipe graph at a time: native_logs_filtered redirects the process's fd 2 while a graph runs.
MEDIAPIPE_LOCK = threading.Lock()

# MediaPipe's native code logs straight to file descriptor 2, with no switch reachable from Python: TF Lite's
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", absl's "WARNING: All log messages before
# absl::InitializeLog() is called are written to STDERR" and absl INFO/WARNING lines ("W0000 00:00:... 123
# file.cc:114] ..."). GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL do not reach them (mediapipe 0.10.21).
_NATIVE_NOISE = re.compile(
    rb"^(INFO: Created TensorFlow Lite |WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] )"
)
quiet_native_logs = True  # the CLI's --verbose turns the filter off


@contextmanager
def native_logs_filtered() -> Iterator[None]:
    """Drop MediaPipe's native INFO/WARNING lines written to fd 2 inside the block; pass on everything else.

    fd 2 points at a temporary file for the block; afterwards every line that is not MediaPipe's
    noise (another thread's log line, an ERROR from the graph) is written to the real stderr.
    """
    if not quiet_native_logs:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as captured:
        _flush_stderr()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                _flush_stderr()  # Python-level text written inside the block goes through the filter too
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if not _NATIVE_NOISE.match(line))
            try:
                while kept:
                    kept = kept[os.write(2, kept) :]
            except OSError:  # stderr closed or full: never fail a face detection over a log line
                pass


def _flush_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


def detect_faces(image: np.ndarray, max_faces: int = 2) -> list[np.ndarray]:
    """Detect faces in an RGB uint8 image (H, W, 3).

    Returns one (478, 3) float32 array per face: x, y normalised to [0, 1] by width/height, z in
    MediaPipe's units (roughly the scale of x). Static-image mode: every call detects from scratch.
    """
    import mediapipe as mp  # heavy import, only when needed

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("detect_faces expects an RGB uint8 image (H, W, 3)")
    with (
        MEDIAPIPE_LOCK,
        native_logs_filtered(),  # the graph logs while it is built, run and closed
        mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
        ) as mesh,
    ):
        result = mesh.process(np.ascontiguousarray(image))
    faces = result.multi_face_landmarks or []
    return [np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32) for f in faces]
