"""One connection of a live push: FLV over RTMP(S), or MPEG-TS over SRT, muxed by PyAV.

Video is the session's own H.264 bitstream, encoded once for every viewer (video_encoder.py): each
packet is copied (the viewers' tracks hold the same objects) and restamped from the frame index, so a
push costs no video encoding. Audio is encoded here, once per push: AAC-LC at 48 kHz mono (what
YouTube, Twitch and nginx-rtmp expect), resampled from the session's 16 kHz by libswresample.

A link starts at a keyframe: its parameter sets (SPS, PPS) become the stream's extradata, from which
the FLV muxer writes the AVC sequence header (and turns the Annex-B packets into length-prefixed ones).
Video frame k of the link is session frame first + k at k/fps, and audio sample n of the link is the
n-th 48 kHz sample of the frames' audio from that frame on: one sample clock for both, as in the MP4
files. AAC's priming makes the first audio timestamp negative; the muxer shifts both streams by the
same amount, so they stay in step.

PyAV opens an output without a timeout or an interrupt callback (av/container/output.py calls
avio_open with neither), so a reachable server that never answers would block the connect forever.
The TCP address is therefore tried first with a timeout (`probe`), which turns the common failures
(refused, unresolvable, unreachable) into one clear sentence quickly; the caller bounds the rest.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urlsplit

import av
import numpy as np

from facecast.frames import s16_frame

AAC_RATE_HZ = 48_000
AAC_BITRATE = 96_000
AAC_FRAME_SAMPLES = 1024
CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
CONTAINERS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts"}
_START_CODE = re.compile(b"\x00\x00\x01")


class PushError(Exception):
    """A push that cannot start or go on (one sentence)."""


@dataclass(frozen=True)
class PushTarget:
    url: str
    scheme: str
    host: str
    port: int | None  # None: an SRT URL without one

    @property
    def container(self) -> str:
        return CONTAINERS[self.scheme]

    @property
    def shown(self) -> str:
        """The URL without its stream key (the last path segment) or query: safe for lists and logs."""
        parts = urlsplit(self.url)
        path = parts.path.rsplit("/", 1)[0] + "/…" if parts.path.count("/") > 1 else parts.path
        return f"{self.scheme}://{parts.netloc.rpartition('@')[2]}{path}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host


def push_target(url: str) -> PushTarget:
    """`url` checked: rtmp://, rtmps:// or srt:// with a host (PushError in one sentence if not)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise PushError(f"the push URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in CONTAINERS:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise PushError(f"cannot push to {shown}: use rtmp://, rtmps:// or srt://")
    if not parts.hostname:
        raise PushError(f"the push URL names no host: give it as {scheme}://HOST[:PORT]/...")
    if scheme != "srt" and parts.path.count("/") < 2:
        raise PushError(f"the {scheme} URL needs an application and a stream key: {scheme}://HOST/APP/KEY")
    return PushTarget(url.strip(), scheme, parts.hostname, port or DEFAULT_PORTS.get(scheme))


def probe(target: PushTarget, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Tries the target's TCP address (PushError if nothing accepts there); nothing to try for SRT (UDP)."""
    if target.scheme == "srt" or target.port is None:
        return
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PushError(failure(target, exc)) from None


def failure(target: PushTarget, exc: BaseException) -> str:
    """One sentence for why pushing to `target` failed."""
    if isinstance(exc, PushError):
        return str(exc)
    code = getattr(exc, "errno", None)
    if isinstance(exc, socket.gaierror):
        return f"the push server's host {target.host!r} cannot be resolved"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"the push server at {target.where} did not answer within {CONNECT_TIMEOUT_S:g} s"
    if code == errno.ECONNREFUSED:
        return f"nothing accepts connections at {target.where} (is the push server running?)"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"the push server at {target.where} cannot be reached"
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return f"this server's FFmpeg cannot push over {target.scheme} (built without it): use rtmp:// or rtmps://"
    if code == errno.EIO and target.container == "flv":
        # nginx-rtmp, YouTube and Twitch answer a publish they refuse by closing the connection.
        return f"the server at {target.where} refused the stream (wrong application or stream key?)"
    if code in (errno.EPIPE, errno.ECONNRESET):
        return f"the push server at {target.where} closed the connection"
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    return f"pushing to {target.shown} failed ({reason})"


def parameter_sets(keyframe: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex-B H.264 keyframe, as Annex-B (the muxers' extradata)."""
    starts = [m.end() for m in _START_CODE.finditer(keyframe)]
    units = [keyframe[s : e - 3] for s, e in zip(starts, [*starts[1:], len(keyframe) + 3], strict=True)]
    kept = [u.rstrip(b"\x00") for u in units if u and u[0] & 0x1F in (7, 8)]
    if not kept:
        raise PushError("the video keyframe carries no H.264 parameter sets")
    return b"".join(b"\x00\x00\x00\x01" + u for u in kept)


class PushLink:
    """A connected push (the constructor connects: probe, RTMP handshake, publish); write, then close."""

    def __init__(self, target: PushTarget, fps: int, keyframe: av.Packet, width: int, height: int) -> None:
        probe(target)
        self.fps = fps
        self.bytes_sent = 0
        self._video_tb = Fraction(1, fps)
        self._audio_pts = 0  # 48 kHz samples encoded
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_RATE_HZ)
        self._fifo = av.AudioFifo()
        self._container = av.open(target.url, "w", format=target.container)
        try:
            self._video = self._container.add_stream("h264", rate=fps)
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.extradata = parameter_sets(bytes(keyframe))
            self._audio = self._container.add_stream("aac", rate=AAC_RATE_HZ)
            self._audio.layout = "mono"
            self._audio.bit_rate = AAC_BITRATE
            self._container.start_encoding()  # connects and publishes; raises what the server answers
        except BaseException:
            self.abort()
            raise

    def write_video(self, packet: av.Packet, frame: int) -> None:
        """The session's encoded `packet` as the link's video frame `frame` (a copy: viewers share it)."""
        copy = av.Packet(bytes(packet))
        copy.pts = copy.dts = frame
        copy.time_base = self._video_tb
        copy.is_keyframe = packet.is_keyframe
        copy.stream = self._video
        self._mux(copy)

    def write_audio(self, samples: np.ndarray) -> None:
        """float32 mono 16 kHz, contiguous with what was written before."""
        if samples.size == 0:
            return
        for out in self._resampler.resample(s16_frame(samples)):
            out.pts = None  # the fifo counts samples; chunks are stamped when read
            self._fifo.write(out)
        self._drain(AAC_FRAME_SAMPLES)

    def _drain(self, samples: int) -> None:
        while (chunk := self._fifo.read(samples)) is not None:
            chunk.pts = self._audio_pts
            chunk.time_base = Fraction(1, AAC_RATE_HZ)
            self._audio_pts += chunk.samples
            for packet in self._audio.encode(chunk):
                self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        self.bytes_sent += packet.size
        self._container.mux(packet)

    def close(self) -> None:
        """Flushes the audio and ends the stream (raises what the connection raises)."""
        try:
            for out in self._resampler.resample(None):
                out.pts = None
                self._fifo.write(out)
            if self._fifo.samples:
                self._drain(self._fifo.samples)
            for packet in self._audio.encode(None):
                self._mux(packet)
        finally:
            self._container.close()

    def abort(self) -> None:
        """Drops the connection without flushing (after a failure)."""
        try:
            self._container.close()
        except Exception:  # the connection is already broken; closing only frees it
            pass
