"""A transparent session's video carries its alpha packed (issue 14): 2S x S, colour | alpha as grey.

The engine runner packs on the worker thread when the engine is transparent (Engine.transparent); the
OutputFrame keeps the S x S colour and the alpha for every other output; skipped frames repeat the last
alpha; stand-ins before any image are fully transparent; a colour background's alpha is never packed; the
shared encoders follow the frame's size.
"""

from __future__ import annotations

import asyncio

import av
import cv2
import numpy as np
import pytest

from facecast.engine import Engine
from facecast.frames import AUDIO_RATE_HZ, MotionFrame, OutputFrame, VideoFrame
from facecast.models.avatar import Avatar
from facecast.models.render.background import parse_background
from facecast.models.render.engine import WarpEngine
from facecast.outputs.queues import QueueOutput
from facecast.outputs.video_encoder import SharedVideoEncoder
from facecast.stream.alpha_packing import GREY_LUMA, packed_alpha_i420
from facecast.stream.clock import FreeRunningClock, ManualClock
from facecast.stream.engine_runner import to_av_frames
from facecast.stream.session import SessionRuntime

SIZE = 64  # the fake engine's frames
YUV_TOLERANCE = 3  # grey through limited-range YUV and back: +-1 or 2 levels


def planes(video: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """I420 (3H/2, W) -> Y (H, W), U (H/2, W/2), V (H/2, W/2)."""
    flat = video.reshape(-1)
    y = flat[: width * height].reshape(height, width)
    q = width * height // 4
    u = flat[width * height : width * height + q].reshape(height // 2, width // 2)
    v = flat[width * height + q :].reshape(height // 2, width // 2)
    return y, u, v


def smooth_picture(seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A colour gradient (little for 4:2:0 to lose) and a random alpha."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, 3).astype(np.float32)
    image = (base + 120 * ramp[None, :, None] * (1 - ramp[:, None, None])) % 256
    alpha = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return image.astype(np.uint8), alpha


class LayeredEngine(Engine):
    """Frame k: a known colour and alpha (smooth_picture(k)), out once its audio is in; transparent by
    default. stall_at: frames whose render costs 80 ms on `clock` (so the next frames are skipped)."""

    skippable = True

    def __init__(
        self, transparent: bool = True, clock: ManualClock | None = None, stall_at: tuple[int, ...] = ()
    ) -> None:
        super().__init__(fps=30, size=SIZE, lookahead_frames=0)
        self.transparent = transparent
        self.clock, self.stall_at = clock, stall_at
        self._pending: list[int] = []

    def _advance(self, samples: np.ndarray) -> None:
        self._pending.append(self.frames_pushed - 1)

    def _take(self, limit: int | None, render: bool) -> list[VideoFrame | MotionFrame]:
        out: list[VideoFrame | MotionFrame] = []
        while self._pending and (limit is None or len(out) < limit):
            k = self._pending.pop(0)
            motion = MotionFrame(k, np.zeros((468, 3), np.float32))
            if not render:
                out.append(motion)
                continue
            if k in self.stall_at and self.clock is not None:
                self.clock.advance(80_000_000)
            image, alpha = smooth_picture(k)
            out.append(VideoFrame(k, image, motion, alpha))
        return out

    def _relax(self) -> None:
        pass


async def frames_of(session: SessionRuntime, n: int) -> list[OutputFrame]:
    sub = session.add_output(QueueOutput())
    session.start()
    frames = [await asyncio.wait_for(sub.get(), 30) for _ in range(n)]
    await session.close()
    return frames


def test_packed_picture_is_cv2s_conversion_of_colour_beside_grey_alpha() -> None:
    image, alpha = smooth_picture(1, 128)
    packed = packed_alpha_i420(image, alpha)
    grey = np.repeat(alpha[:, :, None], 3, axis=2)
    reference = cv2.cvtColor(
        np.ascontiguousarray(np.concatenate([image, grey], axis=1)), cv2.COLOR_RGB2YUV_I420
    )
    assert packed.shape == reference.shape == (192, 256)
    np.testing.assert_array_equal(packed, reference)
    y, u, v = planes(packed, 256, 128)
    np.testing.assert_array_equal(y[:, 128:], GREY_LUMA[alpha])
    assert (u[:, 64:] == 128).all() and (v[:, 64:] == 128).all()
    # The odd-size path (swscale) packs the same way.
    video, _ = to_av_frames(0, 30, image[:127, :127], np.zeros(533, np.float32), alpha[:127, :127])
    assert (video.width, video.height) == (254, 127)


async def test_transparent_engine_frames_are_packed_and_keep_their_colour() -> None:
    frames = await frames_of(SessionRuntime(LayeredEngine(), clock=FreeRunningClock(30)), 8)
    for out in frames:
        image, alpha = smooth_picture(out.index)
        assert (out.video.width, out.video.height) == (2 * SIZE, SIZE)
        assert out.image.shape == (SIZE, SIZE, 3) and np.array_equal(out.image, image)
        assert out.alpha is not None and np.array_equal(out.alpha, alpha)
        yuv = out.video.to_ndarray()
        y, u, v = planes(yuv, 2 * SIZE, SIZE)
        colour = planes(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), SIZE, SIZE)
        for packed_plane, colour_plane in zip((y, u, v), colour, strict=True):  # left: the colour, exactly
            np.testing.assert_array_equal(packed_plane[:, : colour_plane.shape[1]], colour_plane)
        rgb = out.video.to_ndarray(format="rgb24")  # the picture a viewer decodes
        assert np.abs(rgb[:, :SIZE].astype(int) - image).mean() < 4
        right = rgb[:, SIZE:].astype(int)
        assert np.abs(right - alpha[:, :, None]).max() <= YUV_TOLERANCE  # grey, R = G = B = alpha


async def test_a_colour_background_alpha_is_not_packed() -> None:
    frames = await frames_of(SessionRuntime(LayeredEngine(transparent=False), clock=FreeRunningClock(30)), 4)
    for out in frames:
        assert (out.video.width, out.video.height) == (SIZE, SIZE) and out.alpha is None
        image, _ = smooth_picture(out.index)
        np.testing.assert_array_equal(out.video.to_ndarray(), cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420))


async def test_skipped_frames_repeat_the_last_alpha_and_stand_ins_start_transparent() -> None:
    clock = ManualClock(30, auto=True)
    engine = LayeredEngine(clock=clock, stall_at=(5, 6))  # 5 ends 80 ms late, 6 later still: 7 is skipped
    session = SessionRuntime(engine, clock=clock)
    sub = session.add_output(QueueOutput())
    session.inject_engine_fault("before any image")  # frame 0 stands in: no image yet
    session.start()
    frames = [await asyncio.wait_for(sub.get(), 30) for _ in range(12)]
    await session.close()
    assert [f.index for f in frames] == list(range(12))
    first = frames[0]
    assert not first.rendered and first.alpha is not None and not first.alpha.any()
    assert (first.video.width, first.video.height) == (2 * SIZE, SIZE)
    assert np.abs(first.video.to_ndarray(format="rgb24")[:, SIZE:].astype(int)).max() <= YUV_TOLERANCE
    skipped = [f for f in frames if not f.rendered and f.index > 0]
    assert skipped, "no frame was skipped"
    for f in skipped:
        previous = frames[f.index - 1]
        assert f.image is previous.image and f.alpha is previous.alpha
        assert (f.video.width, f.video.height) == (2 * SIZE, SIZE)
        np.testing.assert_array_equal(f.video.to_ndarray(), previous.video.to_ndarray())


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_shared_encoder_takes_the_frames_size(codec: str) -> None:
    encoder = SharedVideoEncoder(codec, SIZE, 30)
    dec = av.CodecContext.create("h264" if codec == "H264" else "vp8", "r")
    sizes = []
    for k in range(6):
        image, alpha = smooth_picture(k)
        video, sound = to_av_frames(k, 30, image, np.zeros(533, np.float32), alpha if k < 4 else None)
        out = OutputFrame(k, 30, image, np.zeros(533, np.float32), 0, False, video, sound)
        packet = encoder.encode(out)
        assert packet is not None
        if k == 4:  # the size changed: a new encoder, starting at a keyframe
            assert packet.is_keyframe
        sizes += [(f.width, f.height) for f in dec.decode(packet)]
    assert sizes[0] == (2 * SIZE, SIZE) and sizes[-1] == (SIZE, SIZE), sizes


async def test_warp_engine_transparent_alpha_is_its_matte(avatar: Avatar, speech: np.ndarray) -> None:
    def session(spec: str) -> SessionRuntime:
        engine = WarpEngine(avatar, fps=30, size=128, background=parse_background(spec))
        runtime = SessionRuntime(engine, clock=FreeRunningClock(30))
        runtime.say(speech[: AUDIO_RATE_HZ // 2], "test")
        return runtime

    transparent = await frames_of(session("transparent"), 10)
    green = await frames_of(session("color:#00b140"), 3)
    for out in transparent:
        assert out.alpha is not None and (out.video.width, out.video.height) == (256, 128)
        rgb = out.video.to_ndarray(format="rgb24").astype(int)
        assert np.abs(rgb[:, 128:] - out.alpha[:, :, None]).max() <= YUV_TOLERANCE
        assert (out.alpha == 0).mean() > 0.15  # the background clear
        assert (out.alpha == 255).mean() > 0.3  # the person solid
    for out in green:
        assert out.alpha is None and (out.video.width, out.video.height) == (128, 128)
