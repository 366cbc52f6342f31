"""Helpers for the browser end-to-end tests: a real `facecast serve` subprocess and headless Chromium.

Everything stays on 127.0.0.1: the server binds there and offers only that ICE host address, and
Chromium runs with background networking off.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_START_TIMEOUT_S = 60.0  # first start imports mediapipe/av; slow on a busy 2-core machine


def chromium_path() -> str | None:
    """The system Chromium (Debian's /usr/bin/chromium); playwright's own browsers are not used."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


@contextmanager
def facecast_server(workdir: Path, extra_config: str = "") -> Iterator[ServerProcess]:
    """Runs `facecast serve` on a free loopback port with its own home folder; stops it afterwards.

    The config offers 127.0.0.1 as the only ICE host address, so media never leaves loopback.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    port = free_port()
    config = workdir / "server.yaml"
    config.write_text(
        "render:\n  engine: warp\n  fps: 30\n"
        "server:\n  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  ice_host_addresses: ['127.0.0.1']\n" + extra_config
    )
    log_path = workdir / "server.log"
    env = dict(os.environ, FACECAST_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("FACECAST_API_TOKEN", None)  # the tests talk to it without a token
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facecast",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopping it cannot touch the test runner
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", home, log_path, process)
    try:
        _wait_healthy(server)
        yield server
    finally:
        _stop(process)


def _wait_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"facecast serve exited with code {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"facecast serve did not answer /healthz in {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # lets it close peer connections and sessions
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


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
    args = [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",  # host candidates on 127.0.0.1
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-gpu",
    ]
    if auto_accept_media:
        args.append("--use-fake-ui-for-media-stream")  # answers the permission prompt with "allow"
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
