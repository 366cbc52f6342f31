"""`facecast bench cluster_latency`: speech → open mouth and interrupt → idle, as a client receives the frames,
for a single-process server and for the same server as a cluster front door (`--cluster local:2`), in one run.

Each mode runs `facecast serve` in a child process, one session, its audio WebSocket and its frames
WebSocket (raw RGB, through the front door in cluster mode). Per trial: speech is sent at its onset;
`onset` is the time until the first received frame whose mouth is open (MediaPipe's face mesh on the
received image: the same independent measure in both modes); then an interrupt, and `interrupt` is the
time until the first received frame of the new generation that is idle with the mouth closed. "Open" is
calibrated on the first trial (a quarter of the way from the idle opening to its wide openings), as
`bench live_latency` does. The extra hop of the cluster (front door → worker) is the difference between
the modes. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from facecast.bench.live_capacity import _free_port, _wait_up
from facecast.bench.live_latency import _speech, pct

TRIALS = 10


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cluster_latency",
        help="speech → open mouth and interrupt → idle: single process vs cluster front door",
    )
    parser.add_argument("--cluster", default="local:2", help="the cluster mode to compare (default local:2)")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--audio", default=None, help="speech file (default: espeak-ng sentence)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(measure(args))
    print(json.dumps(result))
    return 0


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from facecast.bench.mouth_track import MouthMeter

    speech = await _speech(args.audio)
    modes: dict[str, Any] = {}
    with MouthMeter() as meter:
        for mode, cluster in (("single", None), ("cluster", args.cluster)):
            modes[mode] = await _one_mode(args, cluster, speech, meter)
            onset, interrupt = modes[mode]["onset_ms"], modes[mode]["interrupt_ms"]
            print(
                f"{mode}: speech onset → open mouth received p50 {onset['p50']} ms, p95 {onset['p95']} ms; "
                f"interrupt → idle frame received p50 {interrupt['p50']} ms, p95 {interrupt['p95']} ms",
                flush=True,
            )
    return {"bench": "cluster_latency", "size": args.size, "cluster": args.cluster, "modes": modes}


async def _one_mode(
    args: argparse.Namespace, cluster: str | None, speech: np.ndarray, meter: Any
) -> dict[str, Any]:
    from facecast_client import FacecastClient

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "facecast", "serve", "--port", str(port), "--home", tempfile.mkdtemp(prefix="facecast-bench-"),
        "--ice-host", "127.0.0.1", "--size", str(args.size), *(["--cluster", cluster] if cluster else []),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = FacecastClient(url)
    onset_s: list[float] = []
    interrupt_s: list[float] = []
    try:
        await _wait_up(url, proc)
        sid = (await api.create_session())["id"]
        frames = await api.frames(sid, image="rgb24")
        ws = await api.speech(sid)
        received: list[tuple[float, Any]] = []

        async def receive() -> None:
            while True:
                frame = await frames.next_frame()
                received.append((time.monotonic(), frame))

        reader = asyncio.create_task(receive())
        await asyncio.sleep(2.0)
        idle = [meter.measure(f.image) for _, f in received[-30:]]
        idle_open = float(np.nanmax(idle))
        threshold: float | None = None
        for _ in range(args.trials + 1):
            await asyncio.sleep(0.6)
            received.clear()
            t0 = time.monotonic()
            await ws.send(speech)  # the speech stream starts at its onset
            await ws.end()
            await asyncio.sleep(1.4)
            generation = received[-1][1].generation if received else 0
            t_int = time.monotonic()
            await ws.interrupt()
            await asyncio.sleep(0.8)
            shown = [(t, f, meter.measure(f.image)) for t, f in list(received)]
            if threshold is None:
                wide = [m for t, f, m in shown if f.speech and t < t_int and np.isfinite(m)]
                threshold = idle_open + 0.25 * (float(np.percentile(wide, 95)) - idle_open)
                continue
            opened = next((t for t, f, m in shown if f.speech and m > threshold), None)
            quiet = next(
                (
                    t
                    for t, f, m in shown
                    if t >= t_int and f.generation > generation and not f.speech and m <= threshold
                ),
                None,
            )
            if opened is not None:
                onset_s.append(opened - t0)
            if quiet is not None:
                interrupt_s.append(quiet - t_int)
        reader.cancel()
        await frames.close()
        await ws.close()
    finally:
        await api.close()
        proc.terminate()
        proc.wait(30)
    return {
        "onset_ms": _summary(onset_s),
        "interrupt_ms": _summary(interrupt_s),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 50), 1), "p95": round(pct(values, 95), 1), "n": len(values)}
