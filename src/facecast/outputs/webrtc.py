"""A WebRTC viewer: one output holding the aiortc video and audio tracks of one peer.

The session paces frames; both tracks stamp pts from the one sample clock. Stale frames (speech from
before an interrupt, host.is_stale) are never sent: video skips them, audio substitutes silence so the
audio timeline stays continuous.

Video: once negotiation picked the codec (`use_codec`), the track hands aiortc the session's shared
encoder output (av.Packet) instead of raw frames; without it (tests, or a codec with no shared encoder)
it returns raw frames and aiortc encodes per viewer.

Audio leaves as 20 ms packets (audio_packets.py), each released at its own media time on the session's
wall-clock schedule, so RTCP sender reports map video frame k and the audio it covers to the same wall
time and a browser's jitter buffer sees a steady stream. A viewer starts from the newest frame: the
frames queued while it connected would otherwise leave in one burst and inflate its jitter buffers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from facecast.frames import OutputFrame, frame_samples
from facecast.outputs.audio_packets import UPSAMPLE, AudioPacketizer, completion_lag_s, start_s
from facecast.outputs.base import Output, OutputHost
from facecast.outputs.queues import Closed, DropOldestQueue
from facecast.outputs.video_encoder import SUPPORTED, SharedVideoEncoder

VIDEO_QUEUE_FRAMES = 3  # ~100 ms: a slow viewer drops old video rather than falling behind
AUDIO_QUEUE_FRAMES = 30  # ~1 s of audio cover for event-loop hiccups
SENT_LOG_FRAMES = 300  # recent sends, for latency measurements
SCHEDULE_FRAMES = 30  # arrivals (~1 s) from which the session's wall-clock schedule is estimated
MAX_EARLY_S = 0.020  # the most a send waits beyond the hold when its frame came early (bursts)
LATE_LOG_SENDS = 1500  # ~30 s of audio packets (or 50 s of video frames) for the lateness figures


class SendSchedule:
    """When a viewer's sends leave: `hold_s` after their media time on the session's wall-clock schedule.

    One per viewer, shared by its video and audio tracks: aiortc's RTCP sender reports pair each
    stream's RTP time with the wall time its last packet left, so one schedule for both is what lets a
    browser line frame k up with its audio, and a steady cadence is what keeps the browser's jitter
    buffer small. The schedule is the earliest recent arrival (fan-out only ever adds delay).
    A later one (the 90th percentile of arrivals over 10 s) halved the audio's lateness but held back
    the frames of an engine that hands out whole windows at once, so the viewer's 3-frame queue
    dropped them.
    realtime=False (a simulation reading faster than real time): nothing waits.
    """

    def __init__(self, hold_s: float = 0.0, realtime: bool = True) -> None:
        self.hold_s = hold_s
        self.realtime = realtime
        self._offsets: deque[float] = deque(maxlen=SCHEDULE_FRAMES)  # arrival minus media time, s
        self.anchor_s: float | None = None  # wall clock of media time 0, s

    def arrived(self, out: OutputFrame, now: float | None = None) -> None:
        """Frame `out` reached the viewer (the session paces frames: this dates the schedule)."""
        self._offsets.append((time.monotonic() if now is None else now) - out.audio_time_s)
        self.anchor_s = min(self._offsets)

    def due_s(self, media_time_s: float) -> float | None:
        """When what begins at `media_time_s` is due to leave (monotonic s); None: nothing waits."""
        if not self.realtime or self.anchor_s is None:
            return None
        return self.anchor_s + media_time_s + self.hold_s

    def wait_s(self, media_time_s: float, now: float) -> float:
        """How long what begins at `media_time_s` waits before it may leave (0: now)."""
        due = self.due_s(media_time_s)
        if due is None:
            return 0.0
        # Frames early against the schedule (an engine catching up after a stall, or one that hands out
        # whole windows at once) wait no longer than this: the viewer's short queue must not overflow.
        return min(max(0.0, due - now), self.hold_s + MAX_EARLY_S)


class _SessionTrack(MediaStreamTrack):
    def __init__(self, host: OutputHost, maxlen: int | None) -> None:
        super().__init__()
        self.host = host
        self.queue: DropOldestQueue[OutputFrame] = DropOldestQueue(maxlen)
        self.realtime = maxlen is not None  # False: a simulation reading faster than real time
        # Replaced by the viewer's shared one (WebRtcOutput.start); a lone track schedules itself.
        self.schedule = SendSchedule(realtime=self.realtime)
        self.late_s: deque[float] = deque(maxlen=LATE_LOG_SENDS)  # how late recent sends left, s
        self._started = False
        self.sent = 0
        self.last_sent: OutputFrame | None = None
        self.last_anchor_s: float | None = None  # wall clock minus media time of the last frame sent
        self.sent_log: deque[tuple[float, OutputFrame]] = deque(
            maxlen=SENT_LOG_FRAMES
        )  # (monotonic s, frame)

    async def _next(self) -> OutputFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            self._started = True
            if self.realtime:
                self.queue.keep_newest()
        try:
            return await self.queue.get()
        except Closed:
            self.stop()
            raise MediaStreamError from None

    async def _release(self, media_time_s: float) -> None:
        wait = self.schedule.wait_s(media_time_s, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        due = self.schedule.due_s(media_time_s)
        if due is not None:
            # Past the schedule: event-loop stalls, or a chunk completed late. What a browser's jitter
            # buffer has to absorb, so it is reported (stats) rather than guessed.
            self.late_s.append(max(0.0, time.monotonic() - due))

    def lateness_ms(self) -> dict[str, float] | None:
        """p50 / p99 / max of how late recent sends left their schedule, in ms (None: none yet)."""
        if not self.late_s:
            return None
        late = np.array(self.late_s) * 1000
        return {
            k: round(float(np.percentile(late, q)), 2) for k, q in (("p50", 50), ("p99", 99), ("max", 100))
        }

    def _mark(self, out: OutputFrame, media_time_s: float) -> None:
        self.sent += 1
        self.last_sent = out
        now = time.monotonic()
        self.last_anchor_s = now - media_time_s
        self.sent_log.append((now, out))

    def stop(self) -> None:
        self.queue.close()
        super().stop()


class SessionVideoTrack(_SessionTrack):
    kind = "video"

    def __init__(self, host: OutputHost, maxlen: int | None = VIDEO_QUEUE_FRAMES) -> None:
        super().__init__(host, maxlen)
        self.encoder: SharedVideoEncoder | None = None
        self.sender: RTCRtpSender | None = None
        self._need_key: int | None = None  # generation a keyframe must have before packets flow again
        self._last_index: int | None = None  # of the last frame taken from the queue

    def use_codec(self, codec: str, sender: RTCRtpSender | None = None) -> bool:
        """Send the session's shared `codec` packets (False: no shared encoder, aiortc encodes)."""
        if codec not in SUPPORTED or self.readyState != "live":
            return False
        self.encoder = self.host.encoders.acquire(codec)
        self.sender = sender
        self._resync(0)
        return True

    async def recv(self) -> av.VideoFrame | av.Packet:
        if not self._started:
            # The viewer starts from the newest frame (_next): a keyframe asked for at negotiation
            # may be among the frames skipped, so ask for one now.
            self._resync(self.host.generation)
        while True:
            out = await self._next()
            await self._release(out.video_time_s)  # before judging it: an interrupt may come meanwhile
            gap = self._last_index is not None and out.index != self._last_index + 1
            self._last_index = out.index
            if self.host.is_stale(out):
                # Speech from before an interrupt; the shared bitstream continues only at a keyframe.
                self._resync(self.host.generation)
                continue
            if self.encoder is None:
                self._mark(out, out.video_time_s)
                return out.video
            if gap or self._picture_lost():
                # A frame this viewer will never get (its queue overflowed) or one its decoder lost:
                # the next packets reference it, so wait for a keyframe.
                self._resync(out.generation)
            packet = out.packets.get(self.encoder.codec)
            if packet is None:
                continue  # emitted before this encoder existed
            if self._need_key is not None:
                if not (packet.is_keyframe and out.generation >= self._need_key):
                    continue
                self._need_key = None
            self._mark(out, out.video_time_s)
            return packet

    def _resync(self, generation: int) -> None:
        if self.encoder is not None:
            self._need_key = generation if self._need_key is None else max(self._need_key, generation)
            self.encoder.request_keyframe(generation)

    def _picture_lost(self) -> bool:
        """The viewer reported picture loss (RTCP PLI/FIR)?

        aiortc records it in the sender's private flag and only reads it when it encodes frames
        itself, which it never does for pre-encoded packets; so the flag is taken from here
        (aiortc 1.16 has no public path; tests/server/test_webrtc.py sends a real RTCP PLI from a viewer
        and fails if it stops producing a keyframe).
        """
        flag = "_RTCRtpSender__force_keyframe"
        if self.sender is None or not getattr(self.sender, flag, False):
            return False
        setattr(self.sender, flag, False)
        return True

    def stop(self) -> None:
        if self.encoder is not None:
            self.host.encoders.release(self.encoder)
            self.encoder = None
        super().stop()


class SessionAudioTrack(_SessionTrack):
    kind = "audio"

    def __init__(self, host: OutputHost, maxlen: int | None = AUDIO_QUEUE_FRAMES) -> None:
        super().__init__(host, maxlen)
        self.packetizer = AudioPacketizer(opus=False)
        self._ready: deque[tuple[av.AudioFrame, OutputFrame]] = deque()  # 20 ms chunks to send
        self._recent: deque[OutputFrame] = deque(maxlen=3)  # the frames the chunks in _ready came from

    def use_codec(self, codec: str) -> bool:
        """Negotiated `codec`: Opus is encoded here, 20 ms per packet (False: aiortc encodes raw frames)."""
        if codec.lower() != "opus":
            return False
        self.packetizer = AudioPacketizer(opus=True)
        return True

    async def recv(self) -> av.AudioFrame | av.Packet:
        while not self._ready:
            out = await self._next()
            pcm = out.audio_frame.to_ndarray().reshape(-1)
            if self.host.is_stale(out):
                pcm = np.zeros_like(pcm)
            self._recent.append(out)
            self._ready.extend(
                (chunk, out) for chunk in self.packetizer.push(pcm, frame_samples(out.index, out.fps)[0])
            )
        chunk, out = self._ready.popleft()
        await self._release(start_s(chunk))
        self._mark(out, start_s(chunk))
        # An interrupt while the chunk waited silences the part of it that became stale.
        stale = [_span_48k(f) for f in self._recent if self.host.is_stale(f)]
        return self.packetizer.encode(chunk, mute=stale)


def _span_48k(frame: OutputFrame) -> tuple[int, int]:
    """Frame's audio as a 48 kHz sample range of the media timeline."""
    lo, hi = frame_samples(frame.index, frame.fps)
    return lo * UPSAMPLE, hi * UPSAMPLE


class WebRtcOutput(Output):
    """One viewer peer's tracks (video and/or audio), fed the session's frames.

    The tracks exist from start(): negotiation adds them to the peer connection. keep_all: unbounded track
    queues (simulations that read the tracks faster than real time); otherwise a slow viewer drops old frames.
    """

    kind = "webrtc"

    def __init__(self, *, video: bool = True, audio: bool = True, keep_all: bool = False) -> None:
        super().__init__()
        self._want = (video, audio)
        self._keep_all = keep_all
        self.schedule = SendSchedule(realtime=not keep_all)
        self.video: SessionVideoTrack | None = None
        self.audio: SessionAudioTrack | None = None

    def start(self, host: OutputHost) -> None:
        super().start(host)
        want_video, want_audio = self._want
        if want_video:
            self.video = SessionVideoTrack(host, None if self._keep_all else VIDEO_QUEUE_FRAMES)
        if want_audio:
            self.audio = SessionAudioTrack(host, None if self._keep_all else AUDIO_QUEUE_FRAMES)
        # A 20 ms audio chunk is complete up to 13 ms after its start (at 30 fps): both tracks send
        # that much after their media time, so audio leaves at an even 20 ms cadence.
        self.schedule = SendSchedule(completion_lag_s(host.fps), realtime=not self._keep_all)
        for track in self.tracks():
            track.schedule = self.schedule

    def tracks(self) -> list[_SessionTrack]:
        return [t for t in (self.video, self.audio) if t is not None]

    def on_frame(self, frame: OutputFrame) -> None:
        self.schedule.arrived(frame)
        for track in self.tracks():
            track.queue.put(frame)

    def stop(self) -> None:
        for track in self.tracks():
            track.stop()
        super().stop()

    def av_offset_s(self) -> float | None:
        """How much later video leaves than audio for the same media instant (seconds)."""
        if self.video is None or self.audio is None:
            return None
        if self.video.last_anchor_s is None or self.audio.last_anchor_s is None:
            return None
        return self.video.last_anchor_s - self.audio.last_anchor_s

    def stats(self) -> dict[str, Any]:
        per_track = {
            t.kind: {
                "sent": t.sent,
                "dropped": t.queue.dropped,
                "queued": len(t.queue),
                "late_ms": t.lateness_ms(),
            }
            for t in self.tracks()
        }
        return {**super().stats(), **per_track, "av_offset_s": self.av_offset_s()}
