"""Helpers of the microphone tests: a private PulseAudio daemon and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from facecast_client import FacecastClient

CLI = Path(sys.executable).with_name("facecast-client")
VIEW_URL = re.compile(r"^(http://\S+)/v1/sessions/([0-9A-Za-z_-]+)/view\?token=\S+$")
PULSE_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=facecast_mic rate=16000 channels=1
load-module module-null-sink sink_name=facecast_speaker rate=16000 channels=1
set-default-source facecast_mic.monitor
set-default-sink facecast_speaker
"""


class Pulse:
    """A private PulseAudio daemon; `env` points a child process (libpulse, ALSA's pulse plugin) at it."""

    def __init__(self, runtime: Path) -> None:
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime.chmod(0o700)
        (runtime / "pulse.pa").write_text(PULSE_CONFIG)
        self.log = runtime / "pulse.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in ("FACECAST_API_TOKEN", "PULSE_SINK", "PULSE_SOURCE", "PULSE_COOKIE", "ALSA_CONFIG_PATH")
        }
        # HOME too: PulseAudio keeps a cookie and state under it; none of this touches the user's own.
        self.env |= {
            "XDG_RUNTIME_DIR": str(runtime),
            "HOME": str(runtime),
            "PULSE_SERVER": f"unix:{runtime}/pulse/native",
        }
        self.proc = subprocess.Popen(
            # --disable-shm: audio over the socket, not shared memory, whose memfd blocks hit a known
            # PulseAudio assertion (pulseaudio#824) and abort the daemon mid-run.
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--disable-shm",
             "-F", str(runtime / "pulse.pa"), f"--log-target=file:{self.log}"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}: {self.log_tail()}")
            probe = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"pulseaudio did not answer within 30 s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cli:
    """`facecast-client ARGS` in the background; its stdout lines as they come, its stderr kept."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(CLI), *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[str], into: list[str], notify: bool) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))
            if notify:
                self.lines.put(line.rstrip("\n"))

    def wait_line(self, match: Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    self.finish(5)
                    raise AssertionError(
                        f"the CLI exited ({self.proc.returncode}): {self.report()}"
                    ) from None
                continue
            if match(line):
                return line
        raise AssertionError(f"no such line within {timeout} s: {self.report()}")

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C

    def finish(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the CLI did not exit within {timeout} s: {self.report()}") from None
        for thread in self._threads:
            thread.join(10)
        return code

    def report(self) -> str:
        return f"stdout={self.stdout!r} stderr={self.stderr!r}"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str, str]:
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def api(server_url: str, call: Callable[[FacecastClient], Any]) -> Any:
    """One API call from the test (the CLI is another process)."""

    async def go() -> Any:
        async with FacecastClient(server_url) as fc:
            return await call(fc)

    return asyncio.run(go())


def play_into_mic(pulse: Pulse, wav: Path) -> None:
    """What the microphone hears: paplay into the mic sink, in real time (returns when it has played)."""
    subprocess.run(["paplay", "-d", "facecast_mic", str(wav)], env=pulse.env, check=True, timeout=60)


def view_url(cli: Cli) -> tuple[str, str]:
    """The view URL the CLI printed (its first line): (server base, session id)."""
    match = VIEW_URL.match(cli.wait_line(lambda line: line.startswith("http")))
    assert match, cli.report()
    return match.group(1), match.group(2)


# -- the microphone, end to end ------------------------------------------------------------------------
