"""The Janus output's RTP, without Janus: datagrams caught on loopback UDP sockets, parsed with aiortc and
decoded. Video: RFC 6184 packets of the shared encoder's frames, marker on each frame's last packet,
90 kHz timestamps from the media clock, a stream that starts and resumes only at keyframes (after stale
frames and after gaps); audio: one Opus packet per 20 ms on the 48 kHz media clock, stale audio silent;
RTCP: sender reports to the mountpoint's video RTCP port, and a PLI or FIR from there makes a keyframe."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import h264_depayload
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
)

from facecast.frames import OutputFrame, frame_samples
from facecast.outputs.base import OutputState
from facecast.outputs.janus_rtp import (
    AUDIO_PT,
    VIDEO_PT,
    JanusRtpOutput,
    RtpTarget,
    RtpVideo,
    is_keyframe_request,
)
from facecast.outputs.video_encoder import EncoderPool
from facecast.stream.engine_runner import to_av_frames

FPS = 30
SIZE = 192
PRE_SKIP = 312  # libopus's look-ahead at 48 kHz, taken out of the packets' timestamps (audio_packets.py)


@dataclass
class Host:
    fps: int = FPS
    size: int = SIZE
    generation: int = 0
    encoders: EncoderPool = field(default_factory=lambda: EncoderPool(SIZE, FPS))

    def is_stale(self, frame: OutputFrame) -> bool:
        return frame.speech and frame.generation < self.generation


def make_frame(host: Host, index: int, *, generation: int = 0, tone: bool = True) -> OutputFrame:
    """Frame `index` as the session makes it: a noisy picture (keyframes span many packets) and a tone,
    encoded by the host's shared encoders."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    lo, hi = frame_samples(index, FPS)
    t = np.arange(lo, hi) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) if tone else np.zeros(hi - lo)).astype(np.float32)
    video, sound = to_av_frames(index, FPS, image, audio)
    out = OutputFrame(
        index=index, fps=FPS, image=image, audio=audio, generation=generation, speech=True,
        video=video, audio_frame=sound,
    )  # fmt: skip
    host.encoders.encode(out)
    return out


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    pair = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(0.5)
        pair.append(sock)
    yield pair[0], pair[1]
    for sock in pair:
        sock.close()


def received(sock: socket.socket) -> list[RtpPacket]:
    packets = []
    sock.setblocking(False)
    while True:
        try:
            packets.append(RtpPacket.parse(sock.recv(65536)))
        except BlockingIOError:
            return packets


def frames_of(packets: list[RtpPacket]) -> list[list[RtpPacket]]:
    """Packets grouped by RTP timestamp (one video frame each), in order."""
    grouped: dict[int, list[RtpPacket]] = {}
    for p in packets:
        grouped.setdefault(p.timestamp, []).append(p)
    return list(grouped.values())


def output(host: Host, sockets: tuple[socket.socket, socket.socket]) -> JanusRtpOutput:
    video, audio = sockets
    out = JanusRtpOutput(RtpTarget("127.0.0.1", video.getsockname()[1], audio.getsockname()[1]))
    out.start(host)
    return out


def test_video_is_h264_rtp_stamped_from_the_media_clock_with_a_marker_per_frame(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    host = Host()
    out = output(host, sockets)
    for k in range(12):
        out.on_frame(make_frame(host, k))
    packets = received(sockets[0])
    frames = frames_of(packets)
    assert len(frames) == 12
    assert [f[0].timestamp for f in frames] == [3000 * k for k in range(12)]  # 90 kHz: frame k at k/30 s
    assert {p.payload_type for p in packets} == {VIDEO_PT} and len({p.ssrc for p in packets}) == 1
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert len(frames[0]) > 3  # the keyframe of noise spans many packets (FU-A)
    for f in frames:
        assert [p.marker for p in f] == [0] * (len(f) - 1) + [1]  # marker: the frame's last packet only
    assert all(len(p.serialize()) <= 1300 + 12 for p in packets)  # payload + RTP header fit a 1500 MTU
    # What a viewer's depacketizer rebuilds decodes into the pictures sent, starting with a keyframe.
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for f in frames:
        data = b"".join(h264_depayload(p.payload) for p in f)
        pictures += decoder.decode(av.Packet(data))
    assert len(pictures) >= 11 and pictures[0].key_frame
    assert (pictures[0].width, pictures[0].height) == (SIZE, SIZE)
    stats = out.stats()
    assert stats["video_frames_sent"] == 12 and stats["video_packets_sent"] == len(packets)
    out.stop()
    assert out.state is OutputState.STOPPED and host.encoders.active() == []  # the encoder released


def test_audio_is_one_opus_packet_per_20ms_on_the_48khz_media_clock(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    host = Host()
    out = output(host, sockets)
    for k in range(31):  # 1.033 s of audio: 51 whole chunks of 20 ms (the resampler holds back a tail)
        out.on_frame(make_frame(host, k))
    packets = received(sockets[1])
    assert len(packets) == 51
    assert {p.payload_type for p in packets} == {AUDIO_PT} and {p.marker for p in packets} == {0}
    stamps = [p.timestamp for p in packets]
    assert stamps[0] == (0 - PRE_SKIP) % 2**32  # decoded sample at RTP time t is the session's sample t
    assert all((b - a) % 2**32 == 960 for a, b in zip(stamps, stamps[1:], strict=False))
    decoder = av.CodecContext.create("libopus", "r")
    decoded = [f for p in packets for f in decoder.decode(av.Packet(p.payload))]
    assert [f.samples for f in decoded] == [960] * 51  # 20 ms each
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in decoded])
    assert np.abs(pcm.astype(np.float32)).max() > 3000  # the tone
    out.stop()


def test_stale_frames_send_silence_and_no_video_which_resumes_at_a_new_keyframe(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    host = Host()
    out = output(host, sockets)
    for k in range(6):
        out.on_frame(make_frame(host, k))
    received(sockets[0]), received(sockets[1])
    host.generation = 1  # an interrupt: frames 6..8 carry speech of generation 0, now stale
    for k in range(6, 9):
        out.on_frame(make_frame(host, k))
    assert received(sockets[0]) == []  # no stale picture is ever sent
    decoder = av.CodecContext.create("libopus", "r")
    stale = [f.to_ndarray() for p in received(sockets[1]) for f in decoder.decode(av.Packet(p.payload))]
    assert len(stale) >= 4 and np.abs(np.concatenate(stale, axis=1)[:, -960 * 3 :]).max() < 100  # silence
    frame9 = make_frame(host, 9, generation=1)  # the encoder was asked: generation 1 starts with an IDR
    assert frame9.packets["H264"] is not None and frame9.packets["H264"].is_keyframe
    out.on_frame(frame9)
    resumed = frames_of(received(sockets[0]))
    assert len(resumed) == 1 and resumed[0][0].timestamp == 9 * 3000
    out.stop()


class Requests:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def request_keyframe(self, min_generation: int = 0) -> None:
        self.asked.append(min_generation)


def coded(index: int, *, key: bool, generation: int = 0) -> OutputFrame:
    """A frame with a stand-in H.264 packet (an IDR or a P slice NAL)."""
    lo, hi = frame_samples(index, FPS)
    audio = np.zeros(hi - lo, np.float32)
    image = np.zeros((16, 16, 3), np.uint8)
    video, sound = to_av_frames(index, FPS, image, audio)
    packet = av.Packet(b"\x00\x00\x00\x01\x65\x88" if key else b"\x00\x00\x00\x01\x41\x9a")
    packet.is_keyframe, packet.pts, packet.time_base = key, index * 3000, Fraction(1, 90000)
    return OutputFrame(
        index=index, fps=FPS, image=image, audio=audio, generation=generation, speech=True,
        video=video, audio_frame=sound, packets={"H264": packet},
    )  # fmt: skip


def test_video_waits_for_a_keyframe_at_the_start_after_a_gap_and_after_stale_frames() -> None:
    asked = Requests()
    video = RtpVideo(asked, generation=0)
    assert asked.asked == [0] and video.waiting_for_keyframe
    assert video.frame(coded(0, key=False), False, 0) == []  # the start waits for a keyframe
    assert video.frame(coded(1, key=True), False, 0) != []
    assert video.frame(coded(2, key=False), False, 0) != []
    # A gap (frame 3 never reached the output): what follows references it, so a keyframe comes first.
    assert video.frame(coded(4, key=False), False, 0) == [] and asked.asked[-1] == 0
    assert video.frame(coded(5, key=False), False, 0) == []
    assert video.frame(coded(6, key=True), False, 0) != []
    # Stale frames are never sent; a keyframe of the old generation is not enough to resume.
    assert video.frame(coded(7, key=True), True, 1) == [] and asked.asked[-1] == 1
    assert video.frame(coded(8, key=True, generation=0), False, 1) == []
    assert video.frame(coded(9, key=False, generation=1), False, 1) == []
    assert video.frame(coded(10, key=True, generation=1), False, 1) != []
    assert not video.waiting_for_keyframe


def test_a_pli_from_janus_rtcp_port_makes_the_next_frame_a_keyframe(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    host = Host()
    janus_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for Janus's rtcpport
    janus_rtcp.bind(("127.0.0.1", 0))
    janus_rtcp.settimeout(2.0)
    try:
        video, audio = sockets
        out = JanusRtpOutput(
            RtpTarget(
                "127.0.0.1", video.getsockname()[1], audio.getsockname()[1], janus_rtcp.getsockname()[1]
            )
        )
        out.start(host)
        assert out.video is not None
        # A sender report comes at once, from the socket Janus then sends its RTCP to (Janus latches it).
        report, sender = janus_rtcp.recvfrom(2048)
        (sr,) = RtcpPacket.parse(report)
        assert isinstance(sr, RtcpSrPacket) and sr.ssrc == out.video.stream.ssrc
        assert sender[0] == "127.0.0.1"
        frames = [make_frame(host, k) for k in range(5)]
        assert [f.packets["H264"].is_keyframe for f in frames] == [True, False, False, False, False]
        for f in frames:
            out.on_frame(f)
        # What Janus sends (janus_rtcp_pli: sender SSRC 1, media SSRC the stream's) and a receiver
        # report, which asks for nothing.
        pli = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=out.video.stream.ssrc))
        assert pli[:2] == b"\x81\xce" and len(pli) == 12  # V=2, FMT=1; PT=206 (payload-specific feedback)
        rr = bytes(RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(out.video.stream.ssrc, 0, 0, 0, 0, 0, 0)]))
        janus_rtcp.sendto(rr, sender)
        janus_rtcp.sendto(pli, sender)
        for k in range(5, 7):  # frame 5 was encoded before the PLI came; the encoder is asked with 5 sent
            frame = make_frame(host, k)
            assert frame.packets["H264"].is_keyframe == (k == 6), k
            out.on_frame(frame)
        assert out.keyframe_requests == 1 and out.stats()["keyframe_requests"] == 1
        fir = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=0, fci=b"\0" * 8))
        janus_rtcp.sendto(fir, sender)
        out.on_frame(make_frame(host, 7))
        assert out.keyframe_requests == 2 and make_frame(host, 8).packets["H264"].is_keyframe
        out.stop()
    finally:
        janus_rtcp.close()


def test_only_plis_and_firs_are_keyframe_requests() -> None:
    assert is_keyframe_request(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2)))
    assert not is_keyframe_request(bytes(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=b"REMB\1\0\0\0")))
    assert not is_keyframe_request(b"\x80\xc9\x00\x01\x00\x00\x00\x01")  # an empty RR
    assert not is_keyframe_request(b"not rtcp") and not is_keyframe_request(b"")


def test_a_videoroom_target_gets_both_streams_on_one_port_with_the_ssrcs_janus_demultiplexes_by(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    """A VideoRoom remote publisher: one port, the stream told by SSRC (1000 + 10 * mindex)."""
    host = Host()
    port = sockets[0].getsockname()[1]
    out = JanusRtpOutput(RtpTarget("127.0.0.1", port, port, video_ssrc=1010, audio_ssrc=1000))
    out.start(host)
    for k in range(6):
        out.on_frame(make_frame(host, k))
    out.stop()
    packets = received(sockets[0])
    by_ssrc = {
        ssrc: {p.payload_type for p in packets if p.ssrc == ssrc} for ssrc in {p.ssrc for p in packets}
    }
    assert by_ssrc == {1010: {VIDEO_PT}, 1000: {AUDIO_PT}}
    assert received(sockets[1]) == []
