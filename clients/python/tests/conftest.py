"""Fixtures for the client package's tests: a real facecast server, started from the repository's own
environment (.venv, which holds mediapipe and torch; this one, .venv-client, holds Pipecat and LiveKit)
on a loopback port, and the project's lip-sync measure run on what a test collected."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("FACECAST_SHARED", REPO.parent / "shared"))
FACECAST = Path(os.environ.get("FACECAST_BIN", REPO / ".venv" / "bin" / "facecast"))
SIZE = 256  # frames of 256x256 keep the 2-core machine's server light


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`facecast serve` on 127.0.0.1:<port> in its own process (stop() ends it: a server that goes away)."""

    def __init__(self, home: Path, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "FACECAST_API_TOKEN"}
        if token:
            env["FACECAST_API_TOKEN"] = token
        self.log = (home / f"server-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [str(FACECAST), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--home", str(home),
             "--size", str(SIZE), "--ice-host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"facecast serve exited with {self.proc.returncode}: see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"facecast serve did not answer within 90 s: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("facecast-home")


@pytest.fixture(scope="session")
def facecast_server(server_home: Path) -> Iterator[ServerProcess]:
    """One server for the whole run (starting one takes a few seconds)."""
    if not FACECAST.exists():
        pytest.fail(f"{FACECAST} is missing: run `make install` (the server's environment) first")
    server = ServerProcess(server_home)
    yield server
    server.stop()


@pytest.fixture
def server_url(facecast_server: ServerProcess) -> str:
    return facecast_server.url


@pytest.fixture
async def generator(server_url: str) -> AsyncIterator[Any]:
    """A started FacecastVideoGenerator (LiveKit tests) and the facecast frames it saw."""
    from livekit_support import started_generator  # livekit is imported by the tests that use it only

    async with started_generator(server_url) as started:
        yield started


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not (SHARED / "media").is_dir():
        pytest.skip(f"the shared media folder is missing ({SHARED / 'media'})")
    return SHARED / "media"


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A speech file as int16 mono and its rate (PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        chunks = [f.to_ndarray().reshape(f.to_ndarray().shape[0], -1) for f in container.decode(stream)]
    samples = np.concatenate(chunks, axis=1)
    if samples.dtype.kind == "f":
        samples = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    return samples.mean(axis=0).astype(np.int16) if samples.shape[0] > 1 else samples[0], rate


def lipsync(images: list[np.ndarray], audio: np.ndarray, rate: int, fps: int, path: Path) -> dict[str, float]:
    """The project's own lip-sync measure (`facecast bench lipsync`, run by the server's environment)
    on images and int16 mono audio a test collected, written to an MP4 at `fps`."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        for k, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        chunk = 1024
        for at in range(0, audio.size, chunk):
            frame = av.AudioFrame.from_ndarray(
                audio[at : at + chunk].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, at, Fraction(1, rate)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return measure_lipsync(path)


def measure_lipsync(video: Path) -> dict[str, float]:
    """`facecast bench lipsync VIDEO`'s JSON: best_lag (frames), best_corr, corr_by_lag, fps, frames, ..."""
    result = subprocess.run(
        [str(FACECAST), "bench", "lipsync", str(video)], capture_output=True, text=True, check=True
    )
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def pytest_report_header() -> str:
    return f"facecast server: {FACECAST} (python {sys.version.split()[0]})"
