"""`facecast bench av_playout`: lip sync where a viewer sees and hears it, in real headless Chromium.

One unmuted <video> element plays a session's MediaStream (WHEP). The session is sent bursts of a
synthetic open vowel over its WebSocket PCM API, in real time, each burst shifted by a seventh of a
frame more than the last (facecast.bench.av_playout_signal). In the page:
  - video: the display time of every frame (requestVideoFrameCallback expectedDisplayTime) and a
    256 px JPEG of it; mouth opening is measured afterwards with mediapipe face mesh
    (facecast.bench.mouth_track), and a burst's video onset is the first displayed frame at the
    midpoint between the rest and peak opening;
  - audio: a MediaStreamTrackProcessor on the same remote track gives each chunk as the playout path
    pulls it (AudioData.timestamp, on the performance.now() clock) with 1 ms RMS blocks; adding the
    element's playout delay from getStats media-playout (Δ totalPlayoutDelay / Δ totalSamplesCount)
    gives the playout time of every block, and a burst's audio onset is where RMS crosses a threshold.
Offset per burst = video onset - audio onset (negative: the mouth opens before the sound is heard).

Calibration in the same run: a tiny aiortc server with exact A/V sync by construction
(facecast.bench.av_playout_reference), measured identically with the same page. Its median is the
measurement chain's own offset; facecast's median minus it is facecast's lip sync error.
Prints a table, then one JSON line.

Processes: `facecast serve` (unless --url) and the reference each run on their own, one after the
other, with a fresh Chromium each; this process paces the PCM, drives the page and receives its
frame uploads. Recording starts only once Chrome's A/V sync has stopped moving (see MIN_WARMUP_S):
Chrome corrects a skew in steps, seconds apart, and leaves anything inside its 30 ms dead zone, so
two connections can settle at different residual skews; that limits how finely facecast and the
reference compare (target_delay_ms and chrome_skew_median_ms in the result show where each stood).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.av_playout_browser import (
    PAGE_HTML,
    RMS_BLOCK_MS,
    PlayoutPage,
    Recording,
    chromium_tab,
    decode_jpeg,
    sleep_until,
)
from facecast.bench.av_playout_signal import (
    PERIOD_S,
    AudioBlocks,
    burst_onsets_s,
    burst_train,
    detect_audio_onsets,
    match_onsets,
    median,
    spread,
    video_onsets,
)

DEFAULT_BURSTS = 20
FPS = 30
PCM_RATE_HZ = 16000
PCM_CHUNK_SAMPLES = 320  # 20 ms per WebSocket message, paced in real time
# Connected → recording. Chrome's A/V sync needs sender reports of both tracks, then moves one
# track's target delay (jitterBufferTargetDelay) by half the filtered skew, at most every few seconds,
# until the skew is inside its 30 ms dead zone: 15-40 s on loopback. Recording starts once neither
# target delay has moved by more than SETTLED_DELAY_MS for SETTLED_FOR_S seconds (longer than most
# gaps between two of Chrome's moves; a late move still shows in target_delay_ms of the result).
MIN_WARMUP_S = 8.0
MAX_WARMUP_S = 60.0
SETTLED_FOR_S = 12
SETTLED_DELAY_MS = 4.0
STATS_EVERY_S = 2.0  # getStats snapshots, and the page hands over its audio blocks (small)
PLAYOUT_SETTLE_S = 1.5  # after the last sample is sent: the pipeline and jitter buffer play it out
END_WINDOW_S = 6.0  # "at the end" figures use the last this many seconds
SERVER_START_TIMEOUT_S = 90.0  # first start imports mediapipe/av; slow on a busy 2-core machine
TIMEBASE_TOLERANCE_S = 0.05  # AudioData.timestamp counts as performance.now() time if this close

# What the team compares against (reported, never enforced).
TARGETS = {
    "concealment_pct": ("<=", 1.0),
    "jitter_buffer_ms": ("<=", 60.0),
    "lipsync_vs_reference_ms": ("abs<=", 20.0),
    "offset_spread_ms": ("<=", 40.0),
    "displayed_fps": (">=", 28.0),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "av_playout",
        help="lip sync at playout in headless Chromium (vowel bursts), beside an exact-sync reference",
    )
    parser.add_argument(
        "--bursts",
        type=int,
        default=DEFAULT_BURSTS,
        help="vowel bursts sent, 1.2 s apart (with --minutes: the reference's count)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="long mode: keep sending bursts for this long; compares the first and the last minute",
    )
    parser.add_argument("--avatar", help="portrait photo or avatar id (default: the server's default)")
    parser.add_argument(
        "--url", help="measure a running server (default: start `facecast serve` on loopback)"
    )
    parser.add_argument("--token", default=os.environ.get("FACECAST_API_TOKEN"), help="API token for --url")
    parser.add_argument("--skip-reference", action="store_true", help="do not measure the reference server")
    parser.add_argument(
        "--keep", type=Path, help="write what each page recorded here (frames, audio blocks, stats, sends)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facecast.cli.errors import CliError

    if args.bursts < 2:
        raise CliError("--bursts must be at least 2")
    if args.minutes is not None and args.minutes <= 0:
        raise CliError("--minutes must be positive")
    try:
        from playwright.async_api import Error as PlaywrightError
    except ImportError:
        raise CliError(
            "av_playout drives headless Chromium through playwright: pip install playwright "
            "(no browser download: it runs the system chromium)"
        ) from None
    try:
        result = asyncio.run(measure(args))
    except (RuntimeError, OSError, PlaywrightError) as exc:
        raise CliError(f"av_playout: {exc}") from None
    print_table(result)
    print(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------- targets


@dataclass
class FacecastTarget:
    """A facecast session: WHEP for the page, the WebSocket PCM API for the bursts."""

    base_url: str
    http: Any  # aiohttp.ClientSession (with the bearer token, if any)
    session_id: str
    whep_resource: str | None = None

    async def answer(self, offer_sdp: str) -> str:
        url = f"{self.base_url}/v1/sessions/{self.session_id}/whep"
        async with self.http.post(url, data=offer_sdp, headers={"Content-Type": "application/sdp"}) as resp:
            text = str(await resp.text())
            if resp.status >= 400:
                raise RuntimeError(f"WHEP offer refused: {resp.status} {text}")
            location = resp.headers.get("Location")
            self.whep_resource = f"{self.base_url}{location}" if location else None
            return text

    async def play(self, onsets_s: np.ndarray) -> np.ndarray:
        """Sends the burst train as one utterance in real time; time.time() of each onset on the source's clock."""
        samples, starts = burst_train(PCM_RATE_HZ, onsets_s)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        sent = np.full(starts.shape, np.nan)
        ws = await self.http.ws_connect(f"{self.base_url}/v1/sessions/{self.session_id}/audio")
        try:
            await ws.send_json(
                {"type": "start", "sample_rate": PCM_RATE_HZ, "channels": 1, "format": "s16le"}
            )
            t0, wall0 = time.monotonic(), time.time()
            for lo in range(0, pcm.size, PCM_CHUNK_SAMPLES):
                hi = lo + PCM_CHUNK_SAMPLES
                await sleep_until(t0 + lo / PCM_RATE_HZ)
                await ws.send_bytes(pcm[lo:hi].tobytes())
                # Latency counts from the source's own clock (when a microphone would have heard the
                # onset), not from when this loop got round to sending: a late send is the sender's.
                inside = (starts >= lo) & (starts < hi)
                sent[inside] = wall0 + starts[inside] / PCM_RATE_HZ
            await ws.send_json({"type": "end"})
        finally:
            await ws.close()
        return sent

    async def close(self) -> None:
        if self.whep_resource:
            async with self.http.delete(self.whep_resource):
                pass


@dataclass
class ReferenceTarget:
    """The exact-sync reference server process (facecast.bench.av_playout_reference)."""

    base_url: str
    http: Any

    async def answer(self, offer_sdp: str) -> str:
        url = f"{self.base_url}/reference/whep"
        async with self.http.post(url, data=offer_sdp, headers={"Content-Type": "application/sdp"}) as resp:
            text = str(await resp.text())
            if resp.status >= 400:
                raise RuntimeError(f"reference offer refused: {resp.status} {text}")
            return text

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


# ----------------------------------------------------------------------------------------- capture


@dataclass
class Capture:
    """One target's raw run: what the page recorded, getStats snapshots, and when onsets were sent."""

    name: str
    recording: Recording
    stats: list[dict[str, Any]]
    clock_offset_s: float  # time.time() - page performance.now() seconds
    onset_sent_s: np.ndarray  # time.time() per burst onset
    onsets_s: np.ndarray
    page_errors: list[str] = field(default_factory=list)
    warmup_s: float = 0.0  # connected → recording
    sync_settled: bool = False  # Chrome's A/V sync estimate had settled when recording began
    server_send: dict[str, Any] | None = None  # facecast only: the server's own send lateness figures


async def capture(
    name: str,
    answer: Callable[[str], Awaitable[str]],
    play: Callable[[np.ndarray], Awaitable[np.ndarray]],
    page_url: str,
    recording: Recording,
    profile: Path,
    onsets_s: np.ndarray,
) -> Capture:
    """Connects a fresh Chromium to the target, waits for A/V sync to settle, records the burst train."""
    async with chromium_tab(profile, page_url) as page:
        await page.connect(answer)
        print(
            f"{name}: connected; waiting for Chrome's A/V sync to settle (up to {MAX_WARMUP_S:.0f} s)",
            flush=True,
        )
        warmup_s, settled = await _settle(page)
        print(f"{name}: {'settled' if settled else 'not settled'} after {warmup_s:.0f} s", flush=True)
        offset = await page.clock_offset_s()
        # This process paces the PCM it sends; a full garbage collection over everything imported so far
        # would stall it for tens of ms. Frozen objects are never scanned again.
        gc.freeze()
        try:
            stats, sent = await _record(page, play, recording, onsets_s)
        finally:
            gc.unfreeze()
        print(f"{name}: recorded {len(recording.frames)} frames", flush=True)
        errors = await page.errors()
        offset = 0.5 * (offset + await page.clock_offset_s())
    return Capture(name, recording, stats, offset, sent, onsets_s, errors, warmup_s, settled)


async def _record(
    page: PlayoutPage,
    play: Callable[[np.ndarray], Awaitable[np.ndarray]],
    recording: Recording,
    onsets_s: np.ndarray,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Plays the train while the page records; (getStats snapshots, onset send times)."""
    stats = [await page.poll(recording)]
    await page.set_capturing(True)
    print(f"sending {onsets_s.size} bursts ({onsets_s[-1] + PERIOD_S:.0f} s)", flush=True)
    sender = asyncio.ensure_future(play(onsets_s))
    await _poll_while(page, sender, recording, stats)
    await asyncio.sleep(PLAYOUT_SETTLE_S)
    stats.append(await page.poll(recording))  # the last snapshot: before the hand-over work below
    await page.set_capturing(False)
    await page.uploads_done()
    await page.poll(recording)
    return stats, sender.result()


def chrome_skew_ms(snapshot: dict[str, Any]) -> float | None:
    """Chrome's own estimate of video minus audio playout (sender clock, ms), None before reports."""
    video = (snapshot.get("video") or {}).get("estimatedPlayoutTimestamp") or 0
    audio = (snapshot.get("audio") or {}).get("estimatedPlayoutTimestamp") or 0
    return float(video - audio) if video and audio else None


def target_delays_ms(before: dict[str, Any], after: dict[str, Any]) -> tuple[float, float]:
    """(audio, video) jitter buffer target delay between two snapshots (ms; nan without samples)."""
    out = []
    for kind in ("audio", "video"):
        emitted = delta([before, after], kind, "jitterBufferEmittedCount")
        out.append(1000 * ratio(delta([before, after], kind, "jitterBufferTargetDelay"), emitted))
    return out[0], out[1]


def sync_settled(delays_ms: list[tuple[float, float]]) -> bool:
    """Neither target delay moved over the last SETTLED_FOR_S readings (one a second)."""
    last = np.array(delays_ms[-SETTLED_FOR_S:], np.float64)
    if last.shape[0] < SETTLED_FOR_S or not np.all(np.isfinite(last)):
        return False
    return bool(np.all(last.max(axis=0) - last.min(axis=0) <= SETTLED_DELAY_MS))


async def _settle(page: PlayoutPage) -> tuple[float, bool]:
    """Waits (MIN_WARMUP_S..MAX_WARMUP_S) for Chrome's A/V sync to settle; (seconds waited, settled)."""
    t0 = time.monotonic()
    delays: list[tuple[float, float]] = []
    previous = await page.stats()
    while time.monotonic() - t0 < MAX_WARMUP_S:
        await asyncio.sleep(1.0)
        snapshot = await page.stats()
        delays.append(target_delays_ms(previous, snapshot))
        previous = snapshot
        if time.monotonic() - t0 >= MIN_WARMUP_S and sync_settled(delays):
            return time.monotonic() - t0, True
    return time.monotonic() - t0, False


async def _poll_while(
    page: PlayoutPage, sender: asyncio.Future[np.ndarray], recording: Recording, stats: list[dict[str, Any]]
) -> None:
    t_start = time.monotonic()
    next_note = 60.0
    while not sender.done():
        await asyncio.wait({sender}, timeout=STATS_EVERY_S)
        stats.append(await page.poll(recording))
        if time.monotonic() - t_start >= next_note:
            print(f"  {next_note / 60:.0f} min sent", flush=True)
            next_note += 60.0


def keep_capture(cap: Capture, folder: Path) -> None:
    """A capture on disk: frames/NNNNN.jpg, and capture.json (display times, audio chunks, stats, sends)."""
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    frames = cap.recording.ordered_frames()
    for i, (_, _, jpeg) in enumerate(frames):
        (folder / "frames" / f"{i:05d}.jpg").write_bytes(jpeg)
    record = {
        "display_ms": [t for t, _, _ in frames],
        "presented": [n for _, n, _ in frames],
        "audio_chunks": cap.recording.chunks,
        "stats": cap.stats,
        "clock_offset_s": cap.clock_offset_s,
        "onset_sent_s": [None if not math.isfinite(v) else v for v in cap.onset_sent_s.tolist()],
        "onsets_s": cap.onsets_s.tolist(),
        "page_errors": cap.page_errors,
    }
    (folder / "capture.json").write_text(json.dumps(record))


# ---------------------------------------------------------------------------------------- analysis


def delta(stats: list[dict[str, Any]], section: str, key: str, first: int = 0, last: int = -1) -> float:
    a, b = stats[first].get(section) or {}, stats[last].get(section) or {}
    return float(b.get(key, 0.0)) - float(a.get(key, 0.0))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def end_window_start(stats: list[dict[str, Any]]) -> int:
    """Index of the snapshot that starts the last END_WINDOW_S seconds."""
    end = float(stats[-1]["now"])
    for i, snap in enumerate(stats):
        if end - float(snap["now"]) <= END_WINDOW_S * 1000:
            return max(0, min(i, len(stats) - 2))
    return 0


def playout_delay_s(stats: list[dict[str, Any]]) -> float:
    """Mean playout delay of the element's audio over the run (media-playout stats; 0 without them)."""
    value = ratio(delta(stats, "playout", "totalPlayoutDelay"), delta(stats, "playout", "totalSamplesCount"))
    return value if math.isfinite(value) else 0.0


def audio_blocks(chunks: list[dict[str, Any]], delay_s: float) -> tuple[AudioBlocks, str]:
    """Playout time of every RMS block, and which clock the chunk times came from.

    Chromium stamps remote AudioData with the moment the playout path pulled it, on the
    performance.now() clock; that is immune to the page's main thread being late to read. Should a
    browser use another timebase, the read time stands in (a little later, jittery).
    """
    if not chunks:
        return AudioBlocks(np.zeros(0), np.zeros(0)), "none"
    read_s = np.array([c["now"] for c in chunks], np.float64) / 1000.0
    stamp_s = np.array([c["timestamp"] for c in chunks], np.float64) / 1e6
    use_stamp = abs(float(np.median(read_s - stamp_s))) < TIMEBASE_TOLERANCE_S
    starts = stamp_s if use_stamp else read_s
    times, levels = [], []
    for start, chunk in zip(starts, chunks, strict=True):
        block_s = max(1, round(chunk["rate"] * RMS_BLOCK_MS / 1000.0)) / float(chunk["rate"])
        rms = np.asarray(chunk["rms"], np.float64)
        times.append(start + delay_s + np.arange(rms.size) * block_s)
        levels.append(rms)
    order = np.argsort(np.concatenate(times), kind="stable")
    blocks = AudioBlocks(np.concatenate(times)[order], np.concatenate(levels)[order])
    return blocks, "AudioData.timestamp" if use_stamp else "read time"


def mouth_openings(recording: Recording) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(display times in page seconds, presentedFrames, mouth opening) per displayed frame, in order."""
    from facecast.bench.mouth_track import track_mouth_frames

    frames = recording.ordered_frames()
    times = np.array([t for t, _, _ in frames], np.float64) / 1000.0
    presented = np.array([n for _, n, _ in frames], np.int64)
    track = track_mouth_frames((decode_jpeg(jpeg) for _, _, jpeg in frames), times, FPS)
    return times, presented, track.opening


def _ms(value: float) -> float | None:
    return round(value * 1000.0, 1) if math.isfinite(value) else None


def _num(value: float, digits: int = 2) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def analyse(cap: Capture, long_mode: bool) -> dict[str, Any]:
    """Every figure of one target's run (times in ms unless named otherwise)."""
    stats = cap.stats
    delay = playout_delay_s(stats)
    blocks, audio_clock = audio_blocks(cap.recording.chunks, delay)
    sent_page_s = cap.onset_sent_s - cap.clock_offset_s
    audio_on = match_onsets(detect_audio_onsets(blocks), sent_page_s)
    display_s, presented, opening = mouth_openings(cap.recording)
    video_on, skipped = video_onsets(display_s, presented, opening, audio_on, PERIOD_S)
    offsets = video_on - audio_on
    latency = audio_on - sent_page_s
    seconds = (float(stats[-1]["now"]) - float(stats[0]["now"])) / 1000.0
    end = end_window_start(stats)
    span_s = (display_s[-1] - display_s[0]) if display_s.size > 1 else float("nan")
    result: dict[str, Any] = {
        "bursts": int(cap.onsets_s.size),
        "bursts_measured": int(np.count_nonzero(np.isfinite(offsets))),
        "audio_onsets_found": int(np.count_nonzero(np.isfinite(audio_on))),
        "bursts_left_out_missed_frame": skipped,
        "offsets_ms": [_ms(v) for v in offsets],
        "offset_median_ms": _ms(median(offsets)),
        "offset_spread_ms": _ms(spread(offsets)),
        "concealment_pct": _num(
            100
            * ratio(delta(stats, "audio", "concealedSamples"), delta(stats, "audio", "totalSamplesReceived"))
        ),
        "jitter_buffer_ms": _ms(
            ratio(
                delta(stats, "audio", "jitterBufferDelay"), delta(stats, "audio", "jitterBufferEmittedCount")
            )
        ),
        "jitter_buffer_end_ms": _ms(
            ratio(
                delta(stats, "audio", "jitterBufferDelay", end),
                delta(stats, "audio", "jitterBufferEmittedCount", end),
            )
        ),
        "playout_delay_ms": _ms(delay),
        "audio_latency_ms": [_ms(v) for v in latency],
        "video_latency_ms": [_ms(v) for v in video_on - sent_page_s],
        "audio_latency_median_ms": _ms(median(latency)),
        "audio_latency_spread_ms": _ms(spread(latency)),
        "displayed_fps": _num(ratio(float(stats[-1]["rvfc"] - stats[0]["rvfc"]), seconds), 1),
        "element_fps": _num(ratio(delta(stats, "quality", "total"), seconds), 1),
        "presented_fps": _num(ratio(float(presented[-1] - presented[0]), span_s), 1)
        if presented.size
        else None,
        "decoded_fps": _num(ratio(delta(stats, "video", "framesDecoded"), seconds), 1),
        "frames_dropped": int(delta(stats, "video", "framesDropped")),
        "element_frames_dropped": int(delta(stats, "quality", "dropped")),
        "frames_captured": len(cap.recording.frames),
        "face_found_pct": _num(100 * float(np.mean(np.isfinite(opening))) if opening.size else 0.0, 1),
        "video_size": [stats[-1].get("video", {}).get("width"), stats[-1].get("video", {}).get("height")],
        "audio_clock": audio_clock,
        "warmup_s": _num(cap.warmup_s, 1),
        "chrome_sync_settled": cap.sync_settled,
        "target_delay_ms": _target_delays_start_end(stats),
        "chrome_skew_median_ms": _num(
            median(np.array([v for v in map(chrome_skew_ms, stats) if v is not None])), 1
        ),
        "seconds": _num(seconds, 1),
    }
    if cap.page_errors:
        result["page_errors"] = cap.page_errors
    if long_mode:
        result.update(first_last_minute(audio_on, offsets, latency))
    return result


def _target_delays_start_end(stats: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Chrome's jitter buffer target delays (audio, video) in the first and the last interval: a move
    of the video one during the run is Chrome's A/V sync still adjusting."""
    first, last = target_delays_ms(stats[0], stats[1]), target_delays_ms(stats[-2], stats[-1])
    return {kind: [_num(first[i], 1), _num(last[i], 1)] for i, kind in enumerate(("audio", "video"))}


def first_last_minute(audio_on: np.ndarray, offsets: np.ndarray, latency: np.ndarray) -> dict[str, Any]:
    """Offsets and latencies of the bursts heard in the first minute and in the last minute."""
    heard = audio_on[np.isfinite(audio_on)]
    if not heard.size:
        return {}
    first = np.isfinite(audio_on) & (audio_on < heard[0] + 60.0)
    last = np.isfinite(audio_on) & (audio_on > heard[-1] - 60.0)
    return {
        "first_minute_offset_median_ms": _ms(median(offsets[first])),
        "last_minute_offset_median_ms": _ms(median(offsets[last])),
        "first_minute_latency_median_ms": _ms(median(latency[first])),
        "last_minute_latency_median_ms": _ms(median(latency[last])),
    }


def verdicts(facecast: dict[str, Any], lipsync_vs_reference_ms: float | None) -> dict[str, Any]:
    """Each team target with facecast's figure and whether it is met (None: not measured)."""
    values = {
        "concealment_pct": facecast.get("concealment_pct"),
        "jitter_buffer_ms": facecast.get("jitter_buffer_ms"),
        "lipsync_vs_reference_ms": lipsync_vs_reference_ms,
        "offset_spread_ms": facecast.get("offset_spread_ms"),
        "displayed_fps": facecast.get("displayed_fps"),
    }
    out: dict[str, Any] = {}
    for name, (op, bound) in TARGETS.items():
        value = values[name]
        met = None
        if value is not None:
            met = {"<=": value <= bound, ">=": value >= bound, "abs<=": abs(value) <= bound}[op]
        out[name] = {"value": value, "target": f"{op} {bound:g}".replace("abs<=", "within ±"), "met": met}
    return out


# ------------------------------------------------------------------------------------------ report

ROWS = [
    ("lip sync offset, median (video - audio)", "offset_median_ms", "ms"),
    ("offset spread (max - min over bursts)", "offset_spread_ms", "ms"),
    ("bursts measured", "bursts_measured", ""),
    ("audio concealment", "concealment_pct", "%"),
    ("audio jitter buffer, over the run", "jitter_buffer_ms", "ms"),
    ("audio jitter buffer, last 6 s", "jitter_buffer_end_ms", "ms"),
    ("audio playout delay (media-playout)", "playout_delay_ms", "ms"),
    ("audio latency send → playout, median", "audio_latency_median_ms", "ms"),
    ("audio latency spread over the bursts", "audio_latency_spread_ms", "ms"),
    ("displayed fps (rVFC callbacks)", "displayed_fps", ""),
    ("presented fps (rVFC presentedFrames)", "presented_fps", ""),
    ("element fps (getVideoPlaybackQuality)", "element_fps", ""),
    ("decoded fps", "decoded_fps", ""),
    ("framesDropped (inbound-rtp)", "frames_dropped", ""),
    ("frames dropped by the element", "element_frames_dropped", ""),
    ("face found in captured frames", "face_found_pct", "%"),
    ("Chrome's own skew estimate (video - audio)", "chrome_skew_median_ms", "ms"),
    ("warm-up before recording", "warmup_s", "s"),
    ("first minute offset, median", "first_minute_offset_median_ms", "ms"),
    ("last minute offset, median", "last_minute_offset_median_ms", "ms"),
]


def print_table(result: dict[str, Any]) -> None:
    fc, ref = result["facecast"], result.get("reference")
    print(f"\nlip sync at playout, headless Chromium, {fc['bursts']} vowel bursts")
    print(f"{'':42s} {'facecast':>12s} {'reference':>12s}")
    for label, key, unit in ROWS:
        if key not in fc:
            continue
        cells = [_cell(part.get(key) if part else None, unit) for part in (fc, ref)]
        print(f"{label:42s} {cells[0]:>12s} {cells[1]:>12s}")
    for name, row in result["targets"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"target {name}: {row['value']} ({row['target']}): {met}")
    if fc.get("server_send_late_ms"):
        print(f"server's own send lateness past its schedule, last ~30 s (ms): {fc['server_send_late_ms']}")
    if "first_minute_offset_median_ms" in fc:
        print(
            f"offset median, first minute {fc['first_minute_offset_median_ms']} ms, "
            f"last minute {fc['last_minute_offset_median_ms']} ms; audio latency first minute "
            f"{fc['first_minute_latency_median_ms']} ms, last minute {fc['last_minute_latency_median_ms']} ms"
        )
    print(f"facecast offsets (ms): {fc['offsets_ms']}")
    if ref:
        print(f"reference offsets (ms): {ref['offsets_ms']}")


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:g} {unit}".strip() if isinstance(value, int | float) else str(value)


# ----------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def background_server(name: str, command: list[str], health_url: str, log_path: Path) -> Iterator[None]:
    """Runs `command` (a server on loopback) until the block ends; waits until `health_url` answers."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("FACECAST_API_TOKEN", None)  # the bench talks to its own servers without a token
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env | {"FACECAST_HOME": str(log_path.parent / f"{name}-home")},
            start_new_session=True,  # its own process group: Ctrl-C here stops it through _stop only
        )
    try:
        _wait_healthy(name, health_url, process, log_path)
        yield
    finally:
        _stop(process)


@contextmanager
def local_server(workdir: Path) -> Iterator[str]:
    """`facecast serve` on a free loopback port with its own home; yields its base URL."""
    port = free_port()
    config = workdir / "server.yaml"
    config.write_text(
        "render:\n  engine: warp\n  fps: 30\n"
        "server:\n  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  ice_host_addresses: ['127.0.0.1']\n"  # media never leaves loopback
    )
    command = [sys.executable, "-m", "facecast", "serve", "--config", str(config)]
    url = f"http://127.0.0.1:{port}"
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with background_server("facecast serve", command, url + "/healthz", workdir / "server.log"):
        yield url


@contextmanager
def reference_server(workdir: Path, bursts: int, size: int, portrait: bytes | None) -> Iterator[str]:
    """The exact-sync reference (its own process) on a free loopback port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "facecast.bench.av_playout_reference", "--port", str(port)]
    command += ["--bursts", str(bursts), "--fps", str(FPS), "--size", str(size)]
    if portrait is not None:
        (workdir / "portrait").write_bytes(portrait)
        command += ["--portrait", str(workdir / "portrait")]
    url = f"http://127.0.0.1:{port}"
    with background_server("reference", command, url + "/reference/status", workdir / "reference.log"):
        yield url


def _wait_healthy(name: str, url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with code {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer {url} within {SERVER_START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # closes peer connections and sessions
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


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


# -------------------------------------------------------------------------------------- the bench


async def _avatar_for_session(http: Any, base_url: str, ref: str | None) -> tuple[str | None, bytes | None]:
    """(avatar id for the session, portrait bytes for the reference); uploads a photo file."""
    if ref is None:
        return None, None
    path = Path(ref)
    if path.is_file():
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("image", path.read_bytes(), filename=path.name)
        async with http.post(f"{base_url}/v1/avatars", data=form) as resp:
            body = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"the server refused the portrait {path}: {resp.status} {body}")
            return str(body["id"]), path.read_bytes()
    async with http.get(f"{base_url}/v1/avatars/{ref}/image") as resp:
        if resp.status >= 400:
            raise RuntimeError(f"'{ref}' is neither a photo file nor an avatar id on {base_url}")
        return ref, bytes(await resp.read())


async def _measure_facecast(
    base_url: str, args: argparse.Namespace, work: Path, onsets_s: np.ndarray
) -> tuple[Capture, bytes | None]:
    import aiohttp

    recording = Recording()

    headers = {"Authorization": f"Bearer {args.token}"} if args.url and args.token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        avatar_id, portrait = await _avatar_for_session(http, base_url, args.avatar)
        body = {"fps": FPS} | ({"avatar": avatar_id} if avatar_id else {})
        async with http.post(f"{base_url}/v1/sessions", json=body) as resp:
            created = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"the server refused a session: {resp.status} {created}")
        target = FacecastTarget(base_url, http, str(created["id"]))
        try:
            async with page_server(recording.add_routes) as page_url:
                cap = await capture(
                    "facecast",
                    target.answer,
                    target.play,
                    page_url + "/",
                    recording,
                    work / "profile-fc",
                    onsets_s,
                )
            cap.server_send = await _server_send_lateness(http, base_url, target.session_id)
        finally:
            await target.close()
            async with http.delete(f"{base_url}/v1/sessions/{target.session_id}"):
                pass
    return cap, portrait


async def _server_send_lateness(http: Any, base_url: str, session_id: str) -> dict[str, Any] | None:
    """How late the server's tracks sent past their schedule (its own figures, recent ~30 s): tells a
    browser-side change (jitter buffer, A/V sync moves) apart from the server delivering unevenly."""
    async with http.get(f"{base_url}/v1/sessions/{session_id}") as resp:
        if resp.status != 200:
            return None
        info = await resp.json()
    for peer in info.get("peers", []):
        output = peer.get("output") or {}
        if peer.get("kind") == "whep" and "audio" in output:
            return {kind: output.get(kind, {}).get("late_ms") for kind in ("audio", "video")}
    return None


async def _measure_reference(portrait: bytes | None, size: int, work: Path, onsets_s: np.ndarray) -> Capture:
    import aiohttp

    recording = Recording()
    with reference_server(work, onsets_s.size, size, portrait) as url:
        async with page_server(recording.add_routes) as page_url, aiohttp.ClientSession() as http:
            target = ReferenceTarget(url, http)
            return await capture(
                "reference",
                target.answer,
                target.play,
                page_url + "/",
                recording,
                work / "profile-ref",
                onsets_s,
            )


def burst_count(args: argparse.Namespace) -> int:
    if args.minutes is None:
        return int(args.bursts)
    return max(2, int(args.minutes * 60.0 / PERIOD_S))


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    onsets = burst_onsets_s(burst_count(args), FPS)
    with tempfile.TemporaryDirectory(prefix="facecast-av-playout-") as tmp:
        work = Path(tmp)
        if args.url:
            fc_cap, portrait = await _measure_facecast(args.url.rstrip("/"), args, work, onsets)
        else:
            print("starting facecast serve on 127.0.0.1", flush=True)
            with local_server(work) as url:  # stopped before the reference runs: the machine is its own
                fc_cap, portrait = await _measure_facecast(url, args, work, onsets)
        ref_cap = None
        if not args.skip_reference:
            size = int(fc_cap.stats[-1].get("video", {}).get("width") or 512)
            ref_onsets = burst_onsets_s(min(int(args.bursts), onsets.size), FPS)
            ref_cap = await _measure_reference(portrait, size, work, ref_onsets)
    if args.keep:
        for cap in (fc_cap, ref_cap):
            if cap is not None:
                keep_capture(cap, args.keep / cap.name)
    print("measuring mouth openings (mediapipe face mesh)", flush=True)
    facecast = await asyncio.to_thread(analyse, fc_cap, args.minutes is not None)
    facecast["server_send_late_ms"] = fc_cap.server_send
    reference = await asyncio.to_thread(analyse, ref_cap, False) if ref_cap else None
    diff = None
    if reference and facecast["offset_median_ms"] is not None and reference["offset_median_ms"] is not None:
        diff = round(facecast["offset_median_ms"] - reference["offset_median_ms"], 1)
    return {
        "bench": "av_playout",
        "bursts": int(onsets.size),
        "minutes": args.minutes,
        "fps": FPS,
        "facecast": facecast,
        "reference": reference,
        "facecast_minus_reference_median_ms": diff,
        "targets": verdicts(facecast, diff),
        "wall_s": round(time.monotonic() - t_start, 1),
    }
