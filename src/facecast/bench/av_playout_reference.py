"""The calibration server of `facecast bench av_playout`: exact A/V sync by construction.

A plain aiortc peer (none of facecast's session code) streams the burst train:
  - audio: 20 ms, 48 kHz s16 mono av.AudioFrames with continuous pts;
  - video: two images of the same portrait, the rest pose and a wide-open vowel, drawn once with
    facecast's warp renderer; frame k is the open one exactly when its interval
    [k/fps, (k+1)/fps) overlaps a burst (so it switches on the frame containing the onset).
Both tracks are paced from one clock (media time 0 = one monotonic instant). aiortc's sender
reports (RTCP SR) map an RTP timestamp to the moment its packet leaves, so each track hands out
its frames early by the time its sender spends encoding, and packets leave on the media clock.
Everything is in integer 48 kHz samples: 1600 per video frame at 30 fps, 960 per audio frame.

It runs as its own process (`python -m facecast.bench.av_playout_reference`), as the facecast
server does: in the bench's process its pacing stalled whenever the bench did work (frame uploads,
garbage collection), and Chrome's jitter buffer answered with concealment and a longer delay.
HTTP on 127.0.0.1: POST /reference/whep (SDP offer → answer), POST /reference/start (the train
begins), GET /reference/status ({"finished", "onset_sent_s"}).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import math
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.av_playout_browser import post_offer, sleep_until
from facecast.bench.av_playout_signal import BURST_S, burst_onsets_s, burst_train
from facecast.bench.loopback import background_server, free_port

RATE_HZ = 48000
TRAIN_DELAY_S = 0.2  # start request → first sample of the train (rounded up to a frame boundary)
AUDIO_FRAME_SAMPLES = 960  # 20 ms
VIDEO_CLOCK_HZ = 90000
LEAD_SMOOTHING = 0.1  # weight of the newest encode-time sample in the running lead


def mouth_images(avatar: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(closed, open) (size, size, 3) uint8 RGB: the rest pose and a wide-open vowel, warp-rendered."""
    from facecast.frames import MotionFrame
    from facecast.models.audio.dsp_driver import MAX_JAW_CM
    from facecast.models.face.rig import Expression, FaceRig
    from facecast.models.render.warp import WarpRenderer

    rig = FaceRig(avatar.mesh)
    renderer = WarpRenderer(avatar, size)
    closed = renderer.render(MotionFrame(0, rig.offsets(Expression())))
    opened = renderer.render(MotionFrame(1, rig.offsets(Expression(jaw=MAX_JAW_CM))))
    return closed, opened


@contextmanager
def reference_server(
    workdir: Path, bursts: int, fps: int, size: int, portrait: bytes | None
) -> Iterator[str]:
    """The exact-sync reference (its own process) on a free loopback port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "facecast.bench.av_playout_reference", "--port", str(port)]
    command += ["--bursts", str(bursts), "--fps", str(fps), "--size", str(size)]
    if portrait is not None:
        (workdir / "portrait").write_bytes(portrait)
        command += ["--portrait", str(workdir / "portrait")]
    url = f"http://127.0.0.1:{port}"
    with background_server("reference", command, url, "/reference/status", workdir / "reference"):
        yield url


@dataclass
class ReferenceTarget:
    """The exact-sync reference server process (facecast.bench.av_playout_reference)."""

    base_url: str
    http: Any  # aiohttp.ClientSession

    async def answer(self, offer_sdp: str) -> str:
        answer, _ = await post_offer(self.http, f"{self.base_url}/reference/whep", offer_sdp, "reference")
        return answer

    async def play(self, onsets_s: np.ndarray) -> np.ndarray:
        """Starts the train (the server sends it); time.time() each onset was handed to its sender."""
        async with self.http.post(f"{self.base_url}/reference/start") as resp:
            resp.raise_for_status()
        while True:
            await asyncio.sleep(0.25)
            async with self.http.get(f"{self.base_url}/reference/status") as resp:
                status = await resp.json()
            if status["finished"]:
                return np.array([np.nan if v is None else v for v in status["onset_sent_s"]], np.float64)


class ReferenceProgram:
    """The burst train on one media clock, in 48 kHz samples; the train starts when `start_train` says."""

    def __init__(self, onsets_s: np.ndarray, fps: int) -> None:
        if RATE_HZ % fps:
            raise ValueError(f"{fps} fps does not divide {RATE_HZ} Hz into whole samples")
        self.fps = fps
        self.frame_samples = RATE_HZ // fps
        self.train, self.onsets = burst_train(RATE_HZ, onsets_s)
        self.burst_samples = int(round(BURST_S * RATE_HZ))
        self.t0 = time.monotonic() + 0.2  # media time 0
        self.train_start: int | None = None  # media sample where the train begins
        self.sent: dict[int, float] = {}  # audio frame start sample (media) → time.time() handed out

    def now_samples(self) -> int:
        return int((time.monotonic() - self.t0) * RATE_HZ)

    def start_train(self, delay_s: float) -> int:
        """Begin the train at the first video frame boundary `delay_s` from now; its media sample."""
        at = self.now_samples() + int(delay_s * RATE_HZ)
        self.train_start = -(-at // self.frame_samples) * self.frame_samples
        return self.train_start

    def finished(self) -> bool:
        return self.train_start is not None and self.now_samples() > self.train_start + self.train.size

    def audio(self, start: int, count: int) -> np.ndarray:
        """(count,) float32 samples of media [start, start + count)."""
        out = np.zeros(count, np.float32)
        if self.train_start is None:
            return out
        lo, hi = start - self.train_start, start - self.train_start + count
        a, b = max(lo, 0), min(hi, self.train.size)
        if a < b:
            out[a - lo : b - lo] = self.train[a:b]
        return out

    def frame_open(self, k: int) -> bool:
        """Whether video frame k ([k, k+1) frame intervals of media time) overlaps a burst."""
        if self.train_start is None:
            return False
        lo = k * self.frame_samples - self.train_start
        hi = lo + self.frame_samples
        return bool(np.any((self.onsets < hi) & (self.onsets + self.burst_samples > lo)))

    def onset_send_times(self) -> np.ndarray:
        """time.time() at which each burst onset was handed to the audio sender (nan if not yet)."""
        out = np.full(self.onsets.shape, np.nan)
        if self.train_start is None:
            return out
        for i, onset in enumerate(self.onsets + self.train_start):
            chunk = onset // AUDIO_FRAME_SAMPLES * AUDIO_FRAME_SAMPLES
            if chunk in self.sent:
                out[i] = self.sent[chunk] + (onset - chunk) / RATE_HZ
        return out


def _paced_track_class() -> Any:
    from aiortc import MediaStreamTrack

    class PacedTrack(MediaStreamTrack):  # type: ignore[misc]
        """Frames of fixed length (in media samples) handed out on the program's clock."""

        def __init__(self, kind: str, program: ReferenceProgram, frame_samples: int) -> None:
            super().__init__()
            self.kind = kind
            self.program = program
            self.frame_samples = frame_samples
            self.index: int | None = None
            self.lead_s = 0.0
            self.returned_at: float | None = None

        async def next_start(self) -> int:
            """Media sample of the next frame, once it is due (less the sender's encode time)."""
            now = time.monotonic()
            if self.index is None:  # start at the current media time, not at 0: no catch-up burst
                self.index = -(-self.program.now_samples() // self.frame_samples)
            else:
                self.index += 1
                if self.returned_at is not None:  # the sender encoded and sent since we last returned
                    busy = now - self.returned_at
                    self.lead_s += LEAD_SMOOTHING * (min(busy, 0.05) - self.lead_s)
            start = self.index * self.frame_samples
            await sleep_until(self.program.t0 + start / RATE_HZ - self.lead_s)
            self.returned_at = time.monotonic()
            return start

    return PacedTrack


def make_tracks(program: ReferenceProgram, closed: np.ndarray, opened: np.ndarray) -> tuple[Any, Any]:
    """(video track, audio track) of the program."""
    import av

    paced = _paced_track_class()
    yuv = [
        av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p").to_ndarray()
        for img in (closed, opened)
    ]

    class VideoTrack(paced):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__("video", program, program.frame_samples)

        async def recv(self) -> Any:
            start = await self.next_start()
            k = start // program.frame_samples
            frame = av.VideoFrame.from_ndarray(yuv[int(program.frame_open(k))], format="yuv420p")
            frame.pts = k * (VIDEO_CLOCK_HZ // program.fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
            return frame

    class AudioTrack(paced):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__("audio", program, AUDIO_FRAME_SAMPLES)

        async def recv(self) -> Any:
            start = await self.next_start()
            samples = program.audio(start, AUDIO_FRAME_SAMPLES)
            pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RATE_HZ
            frame.pts = start
            frame.time_base = fractions.Fraction(1, RATE_HZ)
            program.sent[start] = time.time()
            return frame

    return VideoTrack(), AudioTrack()


class ReferenceServer:
    """Answers WHEP-style offers (POST /reference/whep, application/sdp) with the program's tracks."""

    def __init__(self, program: ReferenceProgram, closed: np.ndarray, opened: np.ndarray) -> None:
        self.program = program
        self.images = (closed, opened)
        self.peers: list[Any] = []

    def add_routes(self, app: Any) -> None:
        app.router.add_post("/reference/whep", self.post_whep)
        app.router.add_post("/reference/start", self.post_start)
        app.router.add_get("/reference/status", self.get_status)

    async def post_whep(self, request: Any) -> Any:
        from aiohttp import web

        answer = await self.answer(await request.text())
        return web.Response(status=201, text=answer, content_type="application/sdp")

    async def post_start(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"train_start": self.program.start_train(TRAIN_DELAY_S)})

    async def get_status(self, request: Any) -> Any:
        from aiohttp import web

        sent = [v if math.isfinite(v) else None for v in self.program.onset_send_times().tolist()]
        return web.json_response({"finished": self.program.finished(), "onset_sent_s": sent})

    async def answer(self, offer_sdp: str) -> str:
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
        from facecast_client.ice import restrict_host_candidates, rtc_configuration

        pc = RTCPeerConnection(rtc_configuration([]))  # no STUN: loopback only
        self.peers.append(pc)
        video, audio = make_tracks(self.program, *self.images)
        # H.264 first, as facecast's server answers (and it encodes a frame faster than VP8).
        codecs = RTCRtpSender.getCapabilities("video").codecs
        rank = {"video/H264": 0, "video/VP8": 1}
        pc.addTransceiver("video", direction="sendonly").setCodecPreferences(
            sorted(codecs, key=lambda c: rank.get(c.mimeType, 2))
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        pc.addTrack(video)  # onto the offer's transceivers, as facecast's server does
        pc.addTrack(audio)
        restrict_host_candidates(pc, ["127.0.0.1"])
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.peers), return_exceptions=True)
        self.peers.clear()


async def serve(args: argparse.Namespace) -> None:
    """Serves the reference on 127.0.0.1:args.port until SIGINT or SIGTERM."""
    from aiohttp import web

    from facecast.models.avatar import AvatarStore

    with tempfile.TemporaryDirectory(prefix="facecast-av-reference-") as tmp:
        store = AvatarStore(Path(tmp))
        portrait = args.portrait.read_bytes() if args.portrait else None
        avatar = store.add(portrait, size=max(args.size, 512)) if portrait else store.default()
        closed, opened = mouth_images(avatar, args.size)
    program = ReferenceProgram(burst_onsets_s(args.bursts, args.fps), args.fps)
    server = ReferenceServer(program, closed, opened)
    app = web.Application()
    server.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="exact-sync reference server of facecast bench av_playout")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bursts", type=int, required=True)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, default=512, help="frame size in pixels")
    parser.add_argument("--portrait", type=Path, help="portrait photo (default: the bundled one)")
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
