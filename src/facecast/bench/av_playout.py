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
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.av_playout_analysis import (
    Capture,
    analyse,
    keep_capture,
    print_table,
    sync_settled,
    target_delays_ms,
    verdicts,
)
from facecast.bench.av_playout_browser import (
    PlayoutPage,
    Recording,
    chromium_tab,
    page_server,
    post_offer,
    sleep_until,
)
from facecast.bench.av_playout_reference import ReferenceTarget, reference_server
from facecast.bench.av_playout_signal import PERIOD_S, burst_onsets_s, burst_train
from facecast.bench.loopback import facecast_serve

DEFAULT_BURSTS = 20
FPS = 30
PCM_RATE_HZ = 16000
PCM_CHUNK_SAMPLES = 320  # 20 ms per WebSocket message, paced in real time
# Connected → recording. Chrome's A/V sync needs sender reports of both tracks, then moves one
# track's target delay (jitterBufferTargetDelay) by half the filtered skew, at most every few seconds,
# until the skew is inside its 30 ms dead zone: 15-40 s on loopback. Recording starts once neither
# target delay has stopped moving (av_playout_analysis.sync_settled; a late move still shows in
# target_delay_ms of the result).
MIN_WARMUP_S = 8.0
MAX_WARMUP_S = 60.0
STATS_EVERY_S = 2.0  # getStats snapshots, and the page hands over its audio blocks (small)
PLAYOUT_SETTLE_S = 1.5  # after the last sample is sent: the pipeline and jitter buffer play it out


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
        text, location = await post_offer(self.http, url, offer_sdp, "WHEP")
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


# ----------------------------------------------------------------------------------------- capture


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
    with reference_server(work, onsets_s.size, FPS, size, portrait) as url:
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
            with facecast_serve(work / "facecast") as server:  # stopped before the reference runs
                fc_cap, portrait = await _measure_facecast(server.base_url, args, work, onsets)
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
