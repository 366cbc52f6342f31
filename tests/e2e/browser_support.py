"""Helpers for the browser end-to-end tests: a real `facecast serve` subprocess and headless Chromium.

Everything stays on 127.0.0.1: the server binds there and offers only that ICE host address, and
Chromium runs with background networking off.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# The servers and the browser are the benches' own (facecast.bench.loopback), re-exported for the tests.
from facecast.bench.loopback import (  # noqa: F401
    ACCEPT_MEDIA_PROMPT,
    CHROMIUM_ARGS,
    ServerProcess,
    chromium_path,
)
from facecast.bench.loopback import facecast_serve as facecast_server  # noqa: F401


def fake_mic_wav(speech: Path, out: Path, pause_s: float = 0.8) -> Path:
    """The speech at 48 kHz mono with a pause after it, for --use-file-for-fake-audio-capture.

    Chromium loops the file; the pause between repeats gives the mouth a clear closed phase, which
    makes the mouth/speech correlation a sharper test. 48 kHz is Chromium's native capture rate.
    """
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is needed to prepare the fake microphone file (apt-get install sox)")
    subprocess.run(
        [sox, str(speech), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0", str(pause_s)],
        check=True,
        capture_output=True,
    )
    return out


def chromium_args(fake_audio: Path | None, *, auto_accept_media: bool) -> list[str]:
    args = list(CHROMIUM_ARGS)
    if auto_accept_media:
        args.append(ACCEPT_MEDIA_PROMPT)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return args


@asynccontextmanager
async def chromium_page(
    profile_dir: Path, fake_audio: Path | None = None, *, auto_accept_media: bool = True
) -> AsyncIterator[Any]:
    """A page in a fresh headless Chromium profile; console errors are echoed to the test log."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=executable,
            headless=True,
            args=chromium_args(fake_audio, auto_accept_media=auto_accept_media),
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("console", lambda msg: print(f"[browser {msg.type}] {msg.text}"))
            page.on("pageerror", lambda exc: print(f"[browser pageerror] {exc}"))
            yield page
        finally:
            await context.close()


# In-page snapshot of the receive side, straight from getStats (not the page's 1 s poll).
# estimatedPlayoutTimestamp: the sender's (NTP, ms) instant each track plays now; Chrome's lip sync
# works to make the audio and video ones equal.
RECEIVE_STATS_JS = """async () => {
  const pc = window.facecast.pc;
  if (!pc) return null;
  const out = {t: performance.now(), framesDecoded: 0, audioPackets: 0, audioSamples: 0, audioEnergy: 0,
               micPacketsSent: 0, width: 0, height: 0, rttMs: null, videoPlayoutNtpMs: 0, audioPlayoutNtpMs: 0};
  const report = await pc.getStats();
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      out.framesDecoded = r.framesDecoded || 0; out.width = r.frameWidth || 0; out.height = r.frameHeight || 0;
      out.videoPlayoutNtpMs = r.estimatedPlayoutTimestamp || 0;
    } else if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.audioPackets = r.packetsReceived || 0; out.audioSamples = r.totalSamplesReceived || 0;
      out.audioEnergy = r.totalAudioEnergy || 0; out.audioPlayoutNtpMs = r.estimatedPlayoutTimestamp || 0;
    } else if (r.type === "outbound-rtp" && r.kind === "audio") {
      out.micPacketsSent = r.packetsSent || 0;
    }
  });
  out.rttMs = window.facecast.stats.rttMs;
  return out;
}"""
