"""One video encoder per session and codec, shared by every viewer that negotiated that codec.

aiortc would otherwise encode each viewer's copy of every frame itself (its H.264 encoder at
libx264's default "medium" preset costs ~8 ms per 512x512 frame, its VP8 ~3 ms). Here the
session's worker thread encodes each frame once, right after rendering, and the viewer tracks
hand aiortc the finished packets (aiortc packetises pre-encoded av.Packets as they are).

A shared bitstream means a viewer can only start, or resume after a gap, at a keyframe: a new
viewer, a viewer that skipped a stale (pre-interrupt) frame, and a viewer whose browser reported
picture loss each ask for one; the encoder makes the next frame of the required generation an IDR.
Every codec also makes one at least every KEYFRAME_INTERVAL_S, so a viewer whose request for a
keyframe got lost (or whose decoder broke unnoticed) sees a broken picture for at most that long.

An encoder that raises is rebuilt for the next frame, whose packet is then a keyframe (a new encoder
starts with one), so its viewers resume there; EncoderPool.encode returns one sentence per run of
failures for the session to publish as an `error` event. The session and its audio go on.

The encoders take their width and height from the frames, not from the session's size: a transparent
session's frames are 2S x S (colour | alpha, stream/engine_runner.py). A frame of another size than the
encoder's rebuilds it (a keyframe).
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction

import av
from av.video.frame import PictureType

from facecast.frames import OutputFrame

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)
# x264 "superfast" at 1 Mbit/s: 1.5 ms per 512x512 frame on one core and PSNR 37.7 dB on talking-head
# frames, against 7.9 ms / 38.1 dB for aiortc's own H.264 settings ("medium"), and for its VP8 2.2 ms /
# 35.2 dB at its 500 kbit/s start and 2.7 ms / 36.2 dB at 1 Mbit/s.
H264_PRESET = "superfast"
H264_BITRATE = 1_000_000
# aiortc's VP8 starts at 500 kbit/s and follows the viewer's REMB up to 1.5 Mbit/s; one bitstream for
# all viewers cannot follow each viewer, so both codecs run at a fixed 1 Mbit/s (modest for 512x512).
VP8_BITRATE = 1_000_000
SUPPORTED = ("H264", "VP8")
KEYFRAME_INTERVAL_S = 2


class SharedVideoEncoder:
    """Encodes OutputFrames (yuv420p, any even size) into `codec` packets; encode() runs on the worker thread
    only. `size`: the session's (square) size, kept for its owners; the codec follows each frame's size."""

    def __init__(self, codec: str, size: int, fps: int) -> None:
        if codec not in SUPPORTED:
            raise ValueError(f"no shared encoder for {codec}")
        self.codec = codec
        self.size = size
        self.fps = fps
        self.users = 0  # outputs using this encoder (EncoderPool bookkeeping)
        self.frames = 0
        self.keyframes = 0
        self.failures = 0  # encode() calls that raised
        self.failing = False  # the last encode() raised (EncoderPool reports a run of failures once)
        self._lock = threading.Lock()
        self._key_from: int | None = 0  # generation the next forced keyframe must belong to; None: no request
        self._ctx: av.VideoCodecContext | None = None

    def request_keyframe(self, min_generation: int = 0) -> None:
        """The next frame of generation ≥ min_generation will be a keyframe (any thread)."""
        with self._lock:
            if self._key_from is None or min_generation > self._key_from:
                self._key_from = min_generation

    def encode(self, out: OutputFrame) -> av.Packet | None:
        with self._lock:
            force = self._key_from is not None and out.generation >= self._key_from
            if force:
                self._key_from = None
        frame = out.video
        # The frame object is ours alone here (the worker made it); the encoders read pict_type.
        frame.pict_type = PictureType.I if force else PictureType.NONE
        packets = self._context(frame.width, frame.height).encode(frame)
        frame.pict_type = PictureType.NONE
        if not packets:
            return None
        packet = packets[0] if len(packets) == 1 else av.Packet(b"".join(bytes(p) for p in packets))
        packet.is_keyframe = any(p.is_keyframe for p in packets)
        packet.pts = frame.pts
        packet.time_base = VIDEO_TIME_BASE
        self.frames += 1
        self.keyframes += packet.is_keyframe
        return packet

    def rebuild(self) -> None:
        """After a failure (worker thread): a new codec context for the next frame, which starts with a
        keyframe; the broken one's state is gone, so its viewers resume there."""
        self._ctx = None
        self.request_keyframe(0)

    def _context(self, width: int, height: int) -> av.VideoCodecContext:
        """The codec context for frames of width x height (a new one, which starts with a keyframe, when the
        size changed)."""
        if self._ctx is not None and (self._ctx.width, self._ctx.height) != (width, height):
            self._ctx = None
        if self._ctx is None:
            make = _h264 if self.codec == "H264" else _vp8
            self._ctx = make(width, height, self.fps)
        return self._ctx


class EncoderPool:
    """A session's shared encoders, one per codec in use: outputs acquire and release them on the event loop,
    the engine worker thread encodes every frame with each (`encode`). Thread-safe."""

    def __init__(self, size: int, fps: int) -> None:
        self.size = size
        self.fps = fps
        self._encoders: dict[str, SharedVideoEncoder] = {}
        self._lock = threading.Lock()

    def acquire(self, codec: str) -> SharedVideoEncoder:
        """The `codec` encoder (made on first use); each acquire needs one release."""
        with self._lock:
            enc = self._encoders.get(codec)
            if enc is None:
                enc = self._encoders[codec] = SharedVideoEncoder(codec, self.size, self.fps)
            enc.users += 1
            return enc

    def release(self, enc: SharedVideoEncoder) -> None:
        with self._lock:
            enc.users -= 1
            if enc.users <= 0 and self._encoders.get(enc.codec) is enc:
                del self._encoders[enc.codec]

    def active(self) -> list[SharedVideoEncoder]:
        with self._lock:
            return list(self._encoders.values())

    def encode(self, out: OutputFrame) -> list[str]:
        """Worker thread: `out.packets[codec]` for every encoder in use. A failing encoder leaves this frame's
        packet out and is rebuilt for the next (a keyframe); returned: one sentence per encoder that began
        failing on this frame, for the session's `error` event (a run of failures is reported once)."""
        errors: list[str] = []
        for enc in self.active():
            t0 = time.perf_counter()
            try:
                out.packets[enc.codec] = enc.encode(out)
                enc.failing = False
            except Exception as exc:
                enc.failures += 1
                if not enc.failing:
                    log.exception("%s encoder failed; rebuilding it", enc.codec)
                    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                    errors.append(
                        f"the {enc.codec} video encoder failed and restarts at a keyframe ({reason})"
                    )
                enc.failing = True
                enc.rebuild()
            out.encode_s += time.perf_counter() - t0
        return errors


def _h264(width: int, height: int, fps: int) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = H264_BITRATE
    ctx.framerate = Fraction(fps, 1)
    ctx.time_base = VIDEO_TIME_BASE
    ctx.gop_size = KEYFRAME_INTERVAL_S * fps  # x264's keyint (its default is 250 frames)
    # What aiortc negotiates (constrained baseline, level 3.1, packetization-mode 1) and what browsers
    # decode in hardware; zerolatency: no lookahead, no B-frames, one packet out per frame in.
    ctx.profile = "Baseline"
    ctx.options = {"preset": H264_PRESET, "tune": "zerolatency", "level": "31"}
    ctx.thread_count = 1  # one session per worker thread already; threads would oversubscribe 2 cores
    return ctx


def _vp8(width: int, height: int, fps: int) -> av.VideoCodecContext:
    """aiortc's VP8 encoder settings (aiortc.codecs.vpx.Vp8Encoder) at a fixed bitrate, with a bounded
    keyframe interval (aiortc's 3000 frames was 100 s of broken picture after a lost keyframe request)."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = VP8_BITRATE
    ctx.time_base = VIDEO_TIME_BASE
    ctx.gop_size = KEYFRAME_INTERVAL_S * fps  # libvpx's kf_max_dist
    ctx.qmin = 2
    ctx.qmax = 56
    ctx.options = {
        "bufsize": str(VP8_BITRATE),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(VP8_BITRATE),
        "maxrate": str(VP8_BITRATE),
        "noise-sensitivity": "4",
        "overshoot-pct": "15",
        "partitions": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
    }
    ctx.thread_count = 1
    return ctx
