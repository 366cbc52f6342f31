"""`facecast render --push URL`: an offline render streamed live, in real time, to an RTMP(S)/SRT server.

The frames go through what a live session's go through: one shared H.264 encoder, and the push output
(outputs/push.py) that a session's `POST /outputs` makes; only the pacing differs: frame k leaves at
start + k / fps on this process's clock, however fast the engine renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from facecast.cli.errors import CliError
from facecast.engine import Engine
from facecast.frames import OutputFrame
from facecast.outputs.base import StaticHost
from facecast.outputs.offline_render import rendered_frames
from facecast.outputs.push import PushOutput
from facecast.outputs.push_link import PushError
from facecast.outputs.push_process import START_TIMEOUT_S
from facecast.stream.engine_runner import to_av_frames


def push_render(
    engine: Engine,
    audio: np.ndarray,
    url: str,
    *,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Streams the render of `audio` to `url` in real time; returns the frames sent (CliError if it cannot)."""
    try:
        push = PushOutput(url)
    except PushError as exc:
        raise CliError(str(exc)) from None
    host = StaticHost(engine.fps, engine.size)
    push.start(host)
    start: float | None = None
    try:
        for frame, samples in rendered_frames(engine, audio, progress):
            assert frame.image is not None  # rendered_frames hands out rendered frames only
            video, sound = to_av_frames(frame.index, engine.fps, frame.image, samples)
            out = OutputFrame(
                index=frame.index, fps=engine.fps, image=frame.image, audio=samples, generation=0,
                speech=True, video=video, audio_frame=sound,
            )  # fmt: skip
            if start is not None:
                sleep(max(0.0, start + frame.index / engine.fps - clock()))
            host.encoders.encode(out)
            push.on_frame(out)
            if start is None:  # the first frame (a keyframe) connects the push: wait for the outcome
                push.connected.result(timeout=START_TIMEOUT_S + 5)
                start = clock() - frame.index / engine.fps
            if push.link_state == "failed":
                raise PushError(push.error or "the push failed")
    except PushError as exc:
        raise CliError(str(exc)) from None
    finally:
        push.stop()
        push.finish()
    return push.frames_sent
