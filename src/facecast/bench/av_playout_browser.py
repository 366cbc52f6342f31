"""Headless Chromium for `facecast bench av_playout`: the playout page and what it records.

The page (served by the bench itself, see PAGE_HTML) plays one MediaStream (video and audio) in one
unmuted <video> element and records, in performance.now() milliseconds:
  - every displayed frame: requestVideoFrameCallback's expectedDisplayTime and a small JPEG of the
    frame (drawn at the callback, so it is the frame that metadata describes), uploaded at once to
    the bench's own HTTP server (POST /frame): a steady trickle, not a burst of hand-over work in the
    middle of a run (that showed as jitter buffer growth and concealment);
  - the remote audio track as the playout path pulls it: a MediaStreamTrackProcessor on the same
    track, the read time and timestamp of each AudioData chunk and the RMS of each 1 ms block in it;
  - getStats snapshots on demand (inbound-rtp audio/video, media-playout).
Signalling stays in Python (`offer()` / `accept()`), so the page needs no CORS to reach a server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.loopback import ACCEPT_MEDIA_PROMPT, CHROMIUM_ARGS, chromium_path, free_port

CAPTURE_WIDTH_PX = 256  # frames are shipped as JPEGs of this width: enough for face mesh, cheap to encode
RMS_BLOCK_MS = 1.0  # audio loudness resolution (an onset is found to within one block)
CONNECT_TIMEOUT_S = 30.0

PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>facecast av_playout</title>
<style>body{margin:0;background:#000} video{width:512px;height:512px;display:block}</style></head>
<body><video id="video" autoplay playsinline></video>
<script>
"use strict";
const CAPTURE_WIDTH = __CAPTURE_WIDTH__;
const RMS_BLOCK_MS = __RMS_BLOCK_MS__;
const ICE_GATHER_TIMEOUT_MS = 3000;
const video = document.getElementById("video");
const canvas = document.createElement("canvas");
const ctx = canvas.getContext("2d");
const bench = {pc: null, stream: null, capturing: false, audio: [], errors: [], rvfc: 0, uploading: 0,
               audioReads: 0, audioFormat: null, connected: false};
window.bench = bench;
window.addEventListener("error", (ev) => bench.errors.push(String(ev.message)));

// Every presented frame: its display time, and a JPEG of exactly that frame for the face tracker.
function onFrame(now, meta) {
  bench.rvfc += 1;
  if (bench.capturing && meta.width > 0) {
    if (canvas.width !== CAPTURE_WIDTH) {
      canvas.width = CAPTURE_WIDTH;
      canvas.height = Math.round(CAPTURE_WIDTH * meta.height / meta.width);
    }
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const query = `display=${meta.expectedDisplayTime}&presented=${meta.presentedFrames}`;
    bench.uploading += 1;
    // toBlob copies the bitmap now and encodes later, off this callback.
    canvas.toBlob((blob) => {
      if (!blob) { bench.uploading -= 1; bench.errors.push("a frame could not be encoded"); return; }
      fetch(`/frame?${query}`, {method: "POST", body: blob})
        .then((resp) => { if (!resp.ok) bench.errors.push(`frame upload: ${resp.status}`); })
        .catch((err) => bench.errors.push("frame upload: " + err))
        .finally(() => { bench.uploading -= 1; });
    }, "image/jpeg", 0.9);
  }
  video.requestVideoFrameCallback(onFrame);
}
video.requestVideoFrameCallback(onFrame);

// The remote audio as it is pulled for playout: read time, timestamp and 1 ms RMS blocks of each chunk.
async function readAudio(track) {
  const reader = new MediaStreamTrackProcessor({track}).readable.getReader();
  let buf = new Float32Array(0);
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    const now = performance.now();
    try {
      bench.audioReads += 1;
      bench.audioFormat = value.format;
      if (!bench.capturing) continue;
      const n = value.numberOfFrames;
      if (buf.length < n) buf = new Float32Array(n);
      value.copyTo(buf, {planeIndex: 0, format: "f32-planar"});
      const block = Math.max(1, Math.round(value.sampleRate * RMS_BLOCK_MS / 1000));
      const rms = [];
      for (let i = 0; i < n; i += block) {
        const end = Math.min(n, i + block);
        let sum = 0;
        for (let j = i; j < end; j++) sum += buf[j] * buf[j];
        rms.push(Math.sqrt(sum / (end - i)));
      }
      bench.audio.push({now, timestamp: value.timestamp, frames: n, rate: value.sampleRate, rms});
    } catch (err) {
      bench.errors.push("audio: " + err);
    } finally {
      value.close();
    }
  }
}

bench.offer = async () => {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  bench.pc = pc;
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const own = new MediaStream();
  pc.addEventListener("track", (ev) => {
    // One MediaStream with both tracks, so one element plays them in Chrome's A/V sync.
    const stream = ev.streams[0] || own;
    if (!ev.streams[0]) own.addTrack(ev.track);
    bench.stream = stream;
    if (video.srcObject !== stream) video.srcObject = stream;
    video.muted = false;
    video.play().catch((err) => bench.errors.push("play: " + err));
    if (ev.track.kind === "audio") readAudio(ev.track).catch((err) => bench.errors.push("audio: " + err));
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") bench.connected = true;
    if (pc.connectionState === "failed") bench.errors.push("connection failed");
  });
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }
  return pc.localDescription.sdp;
};

bench.accept = async (sdp) => { await bench.pc.setRemoteDescription({type: "answer", sdp}); };

bench.stats = async () => {
  const out = {now: performance.now(), rvfc: bench.rvfc, audioReads: bench.audioReads, audio: null,
               video: null, playout: null, quality: null};
  (await bench.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.audio = {concealedSamples: r.concealedSamples || 0, totalSamplesReceived: r.totalSamplesReceived || 0,
                   jitterBufferDelay: r.jitterBufferDelay || 0, jitterBufferEmittedCount: r.jitterBufferEmittedCount || 0,
                   packetsReceived: r.packetsReceived || 0, packetsLost: r.packetsLost || 0,
                   jitterBufferTargetDelay: r.jitterBufferTargetDelay || 0,
                   estimatedPlayoutTimestamp: r.estimatedPlayoutTimestamp || 0};
    } else if (r.type === "inbound-rtp" && r.kind === "video") {
      out.video = {framesDecoded: r.framesDecoded || 0, framesDropped: r.framesDropped || 0,
                   framesReceived: r.framesReceived || 0, jitterBufferDelay: r.jitterBufferDelay || 0,
                   jitterBufferEmittedCount: r.jitterBufferEmittedCount || 0, codec: r.codecId || "",
                   width: r.frameWidth || 0, height: r.frameHeight || 0,
                   jitterBufferTargetDelay: r.jitterBufferTargetDelay || 0,
                   estimatedPlayoutTimestamp: r.estimatedPlayoutTimestamp || 0};
    } else if (r.type === "media-playout") {
      out.playout = {totalPlayoutDelay: r.totalPlayoutDelay || 0, totalSamplesCount: r.totalSamplesCount || 0,
                     synthesizedSamplesDuration: r.synthesizedSamplesDuration || 0,
                     totalSamplesDuration: r.totalSamplesDuration || 0};
    }
  });
  const q = video.getVideoPlaybackQuality();
  out.quality = {total: q.totalVideoFrames, dropped: q.droppedVideoFrames};
  return out;
};

// Hands over (and forgets) the audio chunks recorded so far, with a getStats snapshot.
bench.poll = async () => ({stats: await bench.stats(), audio: bench.audio.splice(0, bench.audio.length)});
</script></body></html>
""".replace("__CAPTURE_WIDTH__", str(CAPTURE_WIDTH_PX)).replace("__RMS_BLOCK_MS__", str(RMS_BLOCK_MS))


# Headless pages count as hidden to some throttles; frames and timers must run at full rate.
PLAYOUT_CHROMIUM_ARGS = [
    *CHROMIUM_ARGS,
    ACCEPT_MEDIA_PROMPT,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


@dataclass
class Recording:
    """What the page recorded; times in the page's performance.now() milliseconds.

    frames: (display_ms, presentedFrames, jpeg bytes) per displayed frame, as uploaded (any order).
    chunks: one dict per AudioData chunk (now, timestamp µs, frames, rate, rms list).
    """

    frames: list[tuple[float, int, bytes]] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)

    def ordered_frames(self) -> list[tuple[float, int, bytes]]:
        return sorted(self.frames, key=lambda f: f[1])

    def add_routes(self, app: Any) -> None:
        """POST /frame?display=MS&presented=N with a JPEG body: the page's frame uploads."""
        from aiohttp import web

        async def frame(request: web.Request) -> web.Response:
            try:
                display, presented = float(request.query["display"]), int(request.query["presented"])
            except (KeyError, ValueError):
                raise web.HTTPBadRequest(text="display and presented are required") from None
            self.frames.append((display, presented, await request.read()))
            return web.Response(status=204)

        app.router.add_post("/frame", frame)


class PlayoutPage:
    """The bench page in a Chromium tab: connect it to a WHEP-like endpoint, record, read stats."""

    def __init__(self, page: Any) -> None:
        self.page = page

    async def connect(self, answer_for: Callable[[str], Awaitable[str]]) -> None:
        """`answer_for(offer_sdp) -> answer_sdp` does the signalling; waits for decoded video and audio."""
        offer = await self.page.evaluate("() => bench.offer()")
        answer = await answer_for(offer)
        await self.page.evaluate("(sdp) => bench.accept(sdp)", answer)
        await self.page.wait_for_function(
            "() => bench.connected && bench.rvfc > 10 && bench.audioReads > 10 || bench.errors.length",
            timeout=CONNECT_TIMEOUT_S * 1000,
        )
        errors = await self.errors()
        if errors:
            raise RuntimeError(f"the playout page failed: {errors}")

    async def errors(self) -> list[str]:
        return list(await self.page.evaluate("() => bench.errors"))

    async def set_capturing(self, on: bool) -> None:
        await self.page.evaluate("(on) => { bench.capturing = on; }", on)

    async def poll(self, into: Recording) -> dict[str, Any]:
        """A getStats snapshot; the audio chunks recorded since the last poll go `into`."""
        polled = await self.page.evaluate("() => bench.poll()")
        into.chunks.extend(polled["audio"])
        stats: dict[str, Any] = polled["stats"]
        return stats

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("() => bench.stats()")
        return result

    async def uploads_done(self) -> None:
        await self.page.wait_for_function("() => bench.uploading === 0", timeout=CONNECT_TIMEOUT_S * 1000)

    async def clock_offset_s(self, tries: int = 7) -> float:
        """time.time() minus the page's performance.now() (in seconds), from the tightest round trip."""
        best: tuple[float, float] | None = None
        for _ in range(tries):
            before = time.time()
            page_now = float(await self.page.evaluate("() => performance.now()")) / 1000.0
            after = time.time()
            if best is None or after - before < best[0]:
                best = (after - before, 0.5 * (before + after) - page_now)
        assert best is not None
        return best[1]


@asynccontextmanager
async def chromium_tab(profile_dir: Path, url: str) -> AsyncIterator[PlayoutPage]:
    """The playout page at `url` in a fresh headless Chromium profile (audio not muted)."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=executable,
            headless=True,
            args=PLAYOUT_CHROMIUM_ARGS,
            ignore_default_args=["--mute-audio"],  # playwright mutes headless audio; playout must run
            viewport={"width": 640, "height": 640},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("pageerror", lambda exc: print(f"[browser pageerror] {exc}", flush=True))
            await page.goto(url)
            yield PlayoutPage(page)
        finally:
            await context.close()


def decode_jpeg(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a captured frame is not a decodable JPEG")
    return np.ascontiguousarray(bgr[:, :, ::-1])


async def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches `deadline` (no-op when it is past)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


@asynccontextmanager
async def page_server(*routes: Callable[[Any], None]) -> AsyncIterator[str]:
    """The bench's own loopback HTTP server: the playout page at /, and `routes` (frame uploads, reference)."""
    from aiohttp import web

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    for add_routes in routes:
        add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def post_offer(http: Any, url: str, offer_sdp: str, who: str) -> tuple[str, str | None]:
    """POSTs an SDP offer (WHEP style); (answer SDP, Location header)."""
    async with http.post(url, data=offer_sdp, headers={"Content-Type": "application/sdp"}) as resp:
        text = str(await resp.text())
        if resp.status >= 400:
            raise RuntimeError(f"{who} offer refused: {resp.status} {text}")
        return text, resp.headers.get("Location")
