"""A session's already-encoded media as plain RTP to Janus (any number of viewers): to a Streaming
mountpoint, or to a VideoRoom remote publisher (server/janus.py).

Janus relays what it receives on a mountpoint's ports to every WebRTC viewer of that mountpoint, so the
session sends one copy of its media whatever the audience: the H.264 packets of the session's shared
encoder (no re-encoding) and its audio as 20 ms Opus packets (audio_packets.AudioPacketizer, as a direct
WebRTC viewer gets them).

    on_frame ─► RtpVideo.frame()  ─► RTP packets (H.264, payload type 96, 90 kHz)  ─► UDP video port
            └─► RtpAudio.frame()  ─► RTP packets (Opus, payload type 111, 48 kHz)  ─► UDP audio port

RTP timestamps come from the session's media clock: video frame k at `frame.video_time_s` × 90000, an
Opus packet at its pts (the chunk's 48 kHz start less the encoder's pre-skip, as aiortc stamps the
packets of direct viewers, so the decoded sample at RTP time t is the one the session made at t). The
marker bit ends each video frame (RFC 6184); every stream has a random first sequence number, and a
random SSRC unless the target names one.

The two targets differ only in their RtpTarget: a mountpoint has a port per medium and takes any SSRC; a
VideoRoom remote publisher has one port for both and finds each packet's stream by its SSRC (1000 for
the audio at mindex 0, 1010 for the video at mindex 1), so both ports are that one and the SSRCs fixed.

Keyframes on demand: the shared encoder makes one only every 2 s, so a viewer starting to watch through
Janus would wait up to that long for a picture. The mountpoint's video has an RTCP port (server/janus.py,
`rtcpport`; a remote publisher's `rtcp_port` works alike), and Janus sends a PLI (RFC 4585) from it
when a viewer starts watching or asks for a keyframe (at most one a second) — to the address it last
got RTP or RTCP from on that port. So the output sends RTCP sender reports (RFC 3550) to that port from
its own socket (at the start, then every SENDER_REPORT_S), reads what comes back on each frame, and
asks the encoder for a keyframe for every PLI or FIR (keyframe_requests counts them).

    Janus rtcpport ◄── SR (latches our address) ── RTCP socket ──► PLI/FIR ─► encoder.request_keyframe

The video stream, like SessionVideoTrack (webrtc.py), restarts only at a keyframe: at the start, after
stale (pre-interrupt) frames, which are never sent, and after a frame it could not send (a gap); each
time it asks the shared encoder for one (request_keyframe). Stale audio goes out as silence, so the
audio timeline never breaks.

Sends are non-blocking datagrams from the event loop (a few per frame: ~1 ms of CPU at 30 fps); a send
the kernel refuses (its buffer full) is dropped and counted, and the video resumes at a keyframe. The
packet logic (RtpStream, RtpVideo, RtpAudio) takes frames and returns datagrams, testable without Janus.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

from facecast.frames import OutputFrame, frame_samples
from facecast.outputs.audio_packets import AudioPacketizer
from facecast.outputs.base import Output, OutputHost
from facecast.outputs.video_encoder import SharedVideoEncoder

log = logging.getLogger(__name__)

VIDEO_PT = 96  # H.264, what the mountpoint is created with (server/janus.py)
AUDIO_PT = 111  # Opus
VIDEO_CLOCK_HZ = 90_000
H264_PROFILE = "42e01f"  # the shared encoder's constrained baseline, level 3.1
H264_FMTP = f"profile-level-id={H264_PROFILE};packetization-mode=1"
SOCKET_SEND_BUFFER = 1 << 20  # bytes: a keyframe (~30-60 datagrams) never fills it
SENDER_REPORT_S = 2.0  # RTCP sender reports to Janus's video RTCP port: it latches onto their source
NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01


class KeyframeSource(Protocol):
    """What the video stream asks of the shared encoder (video_encoder.SharedVideoEncoder)."""

    def request_keyframe(self, min_generation: int = 0) -> None: ...


@dataclass(frozen=True)
class RtpTarget:
    """Where Janus receives, per stream: a Streaming mountpoint has one UDP port per medium (any SSRC);
    a VideoRoom remote publisher one port for both, each stream with the SSRC Janus expects."""

    host: str
    video_port: int
    audio_port: int
    video_rtcp_port: int | None = None  # Janus's RTCP port for the video (keyframe requests), if any
    video_ssrc: int | None = None  # None: a random one
    audio_ssrc: int | None = None


def is_keyframe_request(datagram: bytes) -> bool:
    """Whether an RTCP datagram (a compound packet) holds a PLI or a FIR; False for anything unparsable."""
    try:
        packets = RtcpPacket.parse(datagram)
    except ValueError:
        return False
    return any(isinstance(p, RtcpPsfbPacket) and p.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) for p in packets)


class RtpStream:
    """One RTP stream's header state: payload type, an SSRC (random unless given), sequence numbers from a
    random start."""

    def __init__(self, payload_type: int, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16)
        self.packets = 0
        self.bytes = 0

    def packetize(self, payloads: list[bytes], timestamp: int, *, marker: bool) -> list[bytes]:
        """One media unit (a video frame, an audio packet) as RTP datagrams; marker: set on the last one
        (video: the end of a frame; Opus without DTX leaves it clear)."""
        out = []
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.payload_type,
                marker=int(marker and i == len(payloads) - 1),
                sequence_number=self.sequence,
                timestamp=timestamp & 0xFFFFFFFF,
                ssrc=self.ssrc,
                payload=payload,
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
            out.append(packet.serialize())
        self.packets += len(out)
        self.bytes += sum(len(d) for d in out)
        return out


class RtpVideo:
    """The session's shared H.264 packets as RTP, starting and resuming only at keyframes."""

    def __init__(self, encoder: KeyframeSource | None, generation: int, ssrc: int | None = None) -> None:
        self.encoder = encoder
        self.stream = RtpStream(VIDEO_PT, ssrc)
        self.frames = 0  # frames sent
        self._h264 = H264Encoder()  # only its packetizer (pack): RFC 6184 single NAL / STAP-A / FU-A
        self._need_key: int | None = generation  # a keyframe of this generation or later comes first
        self._last_index: int | None = None
        self.resync(generation)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._need_key is not None

    def resync(self, generation: int) -> None:
        """Send nothing until a keyframe of `generation` (or later), and ask the encoder for one."""
        self._need_key = generation if self._need_key is None else max(self._need_key, generation)
        if self.encoder is not None:
            self.encoder.request_keyframe(generation)

    def frame(self, out: OutputFrame, stale: bool, current_generation: int) -> list[bytes]:
        """The datagrams for frame `out` (none while waiting for a keyframe, or for a stale frame)."""
        gap = self._last_index is not None and out.index != self._last_index + 1
        self._last_index = out.index
        if stale:  # speech from before an interrupt: never shown; the bitstream resumes at a keyframe
            self.resync(current_generation)
            return []
        if gap:  # a frame this stream never had: what follows references it
            self.resync(out.generation)
        packet = out.packets.get("H264")
        if packet is None:
            return []  # emitted before the encoder existed, or an encoder failure (it restarts at a keyframe)
        if self._need_key is not None:
            if not (packet.is_keyframe and out.generation >= self._need_key):
                return []
            self._need_key = None
        payloads, _ = self._h264.pack(packet)
        self.frames += 1
        return self.stream.packetize(payloads, round(out.video_time_s * VIDEO_CLOCK_HZ), marker=True)


class RtpAudio:
    """The session's audio as 20 ms Opus packets in RTP (stale audio as silence)."""

    def __init__(self, ssrc: int | None = None) -> None:
        self.stream = RtpStream(AUDIO_PT, ssrc)
        self.packetizer = AudioPacketizer(opus=True)

    def frame(self, out: OutputFrame, stale: bool) -> list[bytes]:
        pcm = out.audio_frame.to_ndarray().reshape(-1)
        if stale:
            pcm = np.zeros_like(pcm)
        datagrams: list[bytes] = []
        for chunk in self.packetizer.push(pcm, frame_samples(out.index, out.fps)[0]):
            packet = self.packetizer.encode(chunk)
            assert isinstance(packet, av.Packet) and packet.pts is not None  # opus=True: always a packet
            datagrams += self.stream.packetize([bytes(packet)], int(packet.pts), marker=False)
        return datagrams


class JanusRtpOutput(Output):
    """Forwards a session's media to a Janus Streaming mountpoint or VideoRoom remote publisher over UDP
    (see the module docstring)."""

    kind = "janus"

    def __init__(self, target: RtpTarget) -> None:
        super().__init__()
        self.target = target
        self.id = secrets.token_hex(6)
        self.video: RtpVideo | None = None
        self.audio = RtpAudio(target.audio_ssrc)
        self.dropped = 0  # datagrams the kernel refused (send buffer full) or could not send
        self.last_send_error: str | None = None
        self.keyframe_requests = 0  # PLIs and FIRs from Janus, each passed on to the encoder
        self.sender_reports = 0
        self._encoder: SharedVideoEncoder | None = None
        self._sock: socket.socket | None = None
        self._rtcp: socket.socket | None = None  # connected to Janus's video RTCP port
        self._next_report = 0.0  # time.monotonic() of the next sender report
        self._last_video_ts: int | None = None  # RTP timestamp and wall time (s) of the last video frame
        self._last_video_at = 0.0

    def start(self, host: OutputHost) -> None:
        super().start(host)
        self._encoder = host.encoders.acquire("H264")
        self.video = RtpVideo(self._encoder, host.generation, self.target.video_ssrc)  # asks for a keyframe
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        self._sock = sock
        if self.target.video_rtcp_port:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp.setblocking(False)
            try:  # connected: binds to the address that reaches Janus, and takes datagrams only from it
                rtcp.connect((self.target.host, self.target.video_rtcp_port))
            except OSError as exc:
                rtcp.close()
                self.last_send_error = f"{type(exc).__name__}: {exc}"
            else:
                self._rtcp = rtcp
                self._sender_report()  # Janus learns where to send keyframe requests before anyone watches

    def on_frame(self, frame: OutputFrame) -> None:
        if self._sock is None or self.video is None:
            return
        self._read_rtcp()
        stale = self.host.is_stale(frame)
        video = self.video.frame(frame, stale, self.host.generation)
        if not self._send(video, self.target.video_port) and video:
            self.video.resync(frame.generation)  # a viewer's decoder lost part of this frame
        elif video:
            self._last_video_ts = round(frame.video_time_s * VIDEO_CLOCK_HZ)
            self._last_video_at = time.time()
        self._send(self.audio.frame(frame, stale), self.target.audio_port)
        if self._rtcp is not None and time.monotonic() >= self._next_report:
            self._sender_report()

    def _read_rtcp(self) -> None:
        """Janus's RTCP since the last frame: each PLI or FIR asks the encoder for a keyframe."""
        if self._rtcp is None:
            return
        for _ in range(64):  # Janus sends at most a PLI a second (and REMBs): never more than a few
            try:
                datagram = self._rtcp.recv(2048)
            except BlockingIOError:
                return
            except OSError:  # ICMP port unreachable for a report (Janus gone or not there yet): try later
                continue
            self.on_rtcp(datagram)

    def on_rtcp(self, datagram: bytes) -> None:
        """One RTCP datagram from Janus."""
        if is_keyframe_request(datagram) and self._encoder is not None and self._host is not None:
            self.keyframe_requests += 1
            self._encoder.request_keyframe(self._host.generation)

    def _sender_report(self) -> None:
        """An RTCP SR for the video stream (RTP time of now, from the last frame sent) to Janus."""
        assert self._rtcp is not None and self.video is not None
        self._next_report = time.monotonic() + SENDER_REPORT_S
        now = time.time()
        stream = self.video.stream
        rtp_now = 0
        if self._last_video_ts is not None:
            rtp_now = self._last_video_ts + round((now - self._last_video_at) * VIDEO_CLOCK_HZ)
        ntp = now + NTP_EPOCH_OFFSET_S
        ntp_64 = (int(ntp) << 32) | int((ntp % 1) * (1 << 32))
        info = RtcpSenderInfo(
            ntp_timestamp=ntp_64 & 0xFFFFFFFFFFFFFFFF,
            rtp_timestamp=rtp_now & 0xFFFFFFFF,
            packet_count=stream.packets & 0xFFFFFFFF,
            octet_count=(stream.bytes - 12 * stream.packets) & 0xFFFFFFFF,  # payload octets
        )
        try:
            self._rtcp.send(bytes(RtcpSrPacket(ssrc=stream.ssrc, sender_info=info)))
            self.sender_reports += 1
        except OSError as exc:  # buffer full, or Janus not (yet) there: the next report latches
            self.last_send_error = f"{type(exc).__name__}: {exc}"

    def _send(self, datagrams: list[bytes], port: int) -> bool:
        """Sends them all without waiting; False when any was dropped."""
        assert self._sock is not None
        ok = True
        for datagram in datagrams:
            try:
                self._sock.sendto(datagram, (self.target.host, port))
            except OSError as exc:  # BlockingIOError (buffer full), or an unreachable address
                self.dropped += 1
                self.last_send_error = f"{type(exc).__name__}: {exc}"
                ok = False
        return ok

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._rtcp is not None:
            self._rtcp.close()
            self._rtcp = None
        if self._encoder is not None and self._host is not None:
            self._host.encoders.release(self._encoder)
            self._encoder = None
        if self.video is not None:
            self.video.encoder = None
        super().stop()

    def stats(self) -> dict[str, Any]:
        video = self.video
        return {
            **super().stats(),
            "id": self.id,
            "video_frames_sent": video.frames if video else 0,
            "video_packets_sent": video.stream.packets if video else 0,
            "audio_packets_sent": self.audio.stream.packets,
            "bytes_sent": (video.stream.bytes if video else 0) + self.audio.stream.bytes,
            "datagrams_dropped": self.dropped,
            "keyframe_requests": self.keyframe_requests,
            "sender_reports_sent": self.sender_reports,
        }
