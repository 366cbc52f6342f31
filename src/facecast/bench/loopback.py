"""Servers on loopback and headless Chromium: what the browser benches and the browser tests start.

Everything stays on 127.0.0.1: servers bind there and offer only that ICE host address, and Chromium
(Debian's, driven by playwright; playwright's own browsers are never downloaded) runs with background
networking off. Servers run as their own process group and are stopped by pid (SIGINT, then kill).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_START_TIMEOUT_S = 90.0  # a first start imports mediapipe/av; slow on a busy 2-core machine

# Flags every headless Chromium here needs: fake media devices with the prompt accepted, loopback
# peers, autoplay with sound, nothing reaching out to the network.
CHROMIUM_ARGS = [
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
ACCEPT_MEDIA_PROMPT = "--use-fake-ui-for-media-stream"  # answers the permission prompt with "allow"


def chromium_path() -> str | None:
    """The system Chromium (Debian's /usr/bin/chromium)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def wait_listening(
    name: str, process: subprocess.Popen[bytes], port: int, log_tail: Callable[[], str], timeout_s: float
) -> None:
    """Until `process` (a server a test started) accepts TCP on 127.0.0.1:`port`; RuntimeError with the end of
    its log if it exits first or does not listen within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}: {log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout_s:g} s: {log_tail()}")


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
def background_server(
    name: str, command: list[str], base_url: str, health_path: str, workdir: Path
) -> Iterator[ServerProcess]:
    """Runs `command` (a server on loopback, home and log in `workdir`) until the block ends.

    Waits until base_url + health_path answers 200; the server talks to its callers without a token.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home, log_path = workdir / "home", workdir / "server.log"
    env = dict(os.environ, FACECAST_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("FACECAST_API_TOKEN", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopping it cannot touch the caller
        )
    server = ServerProcess(base_url, home, log_path, process)
    try:
        _wait_healthy(name, server, health_path)
        yield server
    finally:
        _stop(process)


@contextmanager
def facecast_serve(workdir: Path, extra_config: str = "", size: int | None = None) -> Iterator[ServerProcess]:
    """`facecast serve` (warp engine, 30 fps, frames of `size` if given) on a free loopback port, offering
    only 127.0.0.1 for ICE; `extra_config` continues its config's `server:` section."""
    port = free_port()
    config = workdir / "server.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "render:\n  engine: warp\n  fps: 30\n"
        "server:\n  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  ice_host_addresses: ['127.0.0.1']\n" + extra_config
    )
    command = [sys.executable, "-m", "facecast", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), *(["--size", str(size)] if size else [])]
    with background_server(
        "facecast serve", command, f"http://127.0.0.1:{port}", "/healthz", workdir
    ) as server:
        yield server


def _wait_healthy(name: str, server: ServerProcess, health_path: str) -> None:
    url = server.base_url + health_path
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer {url} in {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # lets it close peer connections and sessions
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
