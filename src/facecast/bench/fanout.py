"""`facecast bench fanout`: one speaking session watched by N viewers through Janus and M direct viewers.

Starts Janus (bench/janus_server.py: loopback only) and `facecast serve` (a child process, so its CPU is
measured alone) configured with that Janus, creates one session that speaks without pause, starts its
broadcast (POST /v1/sessions/{id}/broadcast) and measures three phases over --seconds each:

  1. 1 viewer through Janus           the baseline
  2. N viewers through Janus          the point: the server's CPU must not grow with N
  3. N through Janus + M direct       direct viewers are aiortc peers of the server: its CPU grows with M

--to videoroom broadcasts to a VideoRoom instead: the viewers through Janus subscribe to the session's feed.

For each phase it prints the facecast server's CPU (cores, itself and its children), Janus's CPU, and
each path's viewer frame rate (min and median over the viewers, video frames per second). The last
line printed is one JSON object.

What is measured, and what it leaves out: the viewers run in --procs separate processes (aiortc is
single-threaded Python per process). 80 aiortc viewers that each decode 512x512 H.264 and Opus do not fit
on a 2-core machine beside the server and Janus, so by default (--no-decode) each viewer's decoders are
replaced by counters (aiortc.rtcrtpreceiver.get_decoder patched in the viewer processes only): a video
frame counts once aiortc's jitter buffer has reassembled it from its RTP packets (all received and
SRTP-decrypted), which is what a decoder would get; nothing is decoded. --decode decodes for real
(what fits: a handful of viewers). The viewers' own CPU is printed too; when the machine is saturated
(load average, viewers' CPU) the frame rates measure the machine, not the server: read them with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from facecast.bench.counting_receivers import count_instead_of_decoding
from facecast.bench.live_capacity import _cpu_s

JOIN_TIMEOUT_S = 20.0  # a viewer's first video frame (a keyframe is at most 2 s away, plus ICE and DTLS)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fanout", help="viewers through Janus vs direct: viewer fps and server CPU")
    parser.add_argument("--janus-viewers", type=int, default=40, help="N: viewers through Janus")
    parser.add_argument("--direct-viewers", type=int, default=40, help="M: direct WebRTC viewers")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window of each phase")
    parser.add_argument("--size", type=int, default=256, help="video size (the session's frames)")
    parser.add_argument("--procs", type=int, default=4, help="viewer processes")
    parser.add_argument(
        "--to", choices=["streaming", "videoroom"], default="streaming",
        help="the broadcast's Janus target: a Streaming mountpoint, or a VideoRoom room's feed",
    )  # fmt: skip
    parser.add_argument(
        "--decode", action=argparse.BooleanOptionalAction, default=False,
        help="decode video and audio in the viewers (default: count reassembled frames, no decoding)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facecast.bench.janus_server import JanusServer, janus_available

    problem = janus_available()
    if problem:
        print(f"cannot run the fan-out bench: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="facecast-fanout-") as work:
        with JanusServer(Path(work) / "janus") as janus:
            print(json.dumps(asyncio.run(measure(args, janus.url, janus.pid or 0, Path(work)))))
    return 0


# -- viewer processes ------------------------------------------------------------------------------
def _viewer_process(
    conn: Connection, server_url: str, sid: str, janus_url: str, watch: dict[str, int], decode: bool
) -> None:
    if not decode:
        count_instead_of_decoding()
    asyncio.run(_viewers(conn, server_url, sid, janus_url, watch))


async def _viewers(
    conn: Connection, server_url: str, sid: str, janus_url: str, watch: dict[str, int]
) -> None:
    """`watch`: what the viewers watch, {"mountpoint": ID} or {"room": ID, "feed": ID}."""
    from facecast_client import FacecastClient, Viewer

    from facecast.bench.janus_viewer import JanusViewer

    loop = asyncio.get_running_loop()
    api = FacecastClient(server_url)
    janus: list[JanusViewer] = []
    direct: list[Viewer] = []
    try:
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "add":
                _, kind, count = command
                joined = 0
                for _ in range(count):  # one after another: each has its first frame before the next joins
                    try:
                        if kind == "janus":
                            viewer = JanusViewer(
                                janus_url,
                                watch.get("mountpoint"),
                                room=watch.get("room"),
                                feed=watch.get("feed"),
                            )
                            await viewer.start()
                            janus.append(viewer)
                            counts = viewer.counts
                        else:
                            direct.append(await api.watch(sid, Viewer(keep_frames=False)))
                            counts = direct[-1].counts
                    except Exception as exc:  # a saturated machine: the offer or the watch timed out
                        print(f"a {kind} viewer could not join: {type(exc).__name__}: {exc}", file=sys.stderr)
                        continue
                    deadline = time.monotonic() + JOIN_TIMEOUT_S
                    while counts["video"] == 0 and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    joined += counts["video"] > 0
                conn.send(joined)
            elif command[0] == "counts":
                report = [("janus", v.counts["video"], v.counts["audio"]) for v in janus]
                report += [("direct", v.counts["video"], v.counts["audio"]) for v in direct]
                conn.send((report, time.process_time()))
            else:
                break
    finally:
        for j in janus:
            await j.close()
        for d in direct:
            await d.close()
        await api.close()
        conn.send("closed")


# -- the run ---------------------------------------------------------------------------------------
async def measure(args: argparse.Namespace, janus_url: str, janus_pid: int, work: Path) -> dict[str, Any]:
    from facecast_client import FacecastClient, pcm_s16le

    from facecast.bench.live_capacity import _speak_forever, _wait_up
    from facecast.bench.live_latency import _speech
    from facecast.bench.loopback import free_port

    speech = await _speech(None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = work / "server.yaml"
    peers = args.direct_viewers + 8
    config.write_text(
        f"server:\n  janus_url: {janus_url}\n  max_peers_per_session: {peers}\n  refuse_when_late: false\n"
        "  offer_timeout_s: 60\n"  # peers joining a saturated machine take longer than the default 10 s
    )
    cmd = [sys.executable, "-m", "facecast", "serve", "--config", str(config), "--port", str(port)]
    cmd += ["--home", str(work / "home"), "--ice-host", "127.0.0.1", "--size", str(args.size), "--fps", "30"]
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(work / "server.log").open("wb"))
    api = FacecastClient(url)
    ctx = mp.get_context("spawn")
    workers: list[tuple[Any, Connection]] = []
    speaker: asyncio.Task[None] | None = None
    load_before = os.getloadavg()[0]
    phases: list[dict[str, Any]] = []
    try:
        await _wait_up(url, proc)
        sid = (await api.create_session())["id"]
        ws = await api.audio_socket(sid)
        speaker = asyncio.ensure_future(_speak_forever(ws, pcm_s16le(speech), speech.size / 16000))
        started = await api.call(
            "POST", f"/v1/sessions/{sid}/broadcast", json={"action": "start", "to": args.to}
        )
        keys = ("mountpoint",) if args.to == "streaming" else ("room", "feed")
        watch = {key: int(started[key]) for key in keys}
        for _ in range(max(1, args.procs)):
            here, there = ctx.Pipe()
            process = ctx.Process(
                target=_viewer_process, args=(there, url, sid, janus_url, watch, args.decode)
            )
            process.start()
            workers.append((process, here))

        async def add(kind: str, total: int) -> None:
            shares = [total // len(workers) + (i < total % len(workers)) for i in range(len(workers))]
            for (_, conn), share in zip(workers, shares, strict=True):
                if share:
                    conn.send(("add", kind, share))
            joined = 0
            for (_, conn), share in zip(workers, shares, strict=True):
                if share:
                    joined += await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            if joined < total:
                print(f"only {joined} of {total} {kind} viewers received video within {JOIN_TIMEOUT_S:g} s")

        async def window(name: str) -> dict[str, Any]:
            await asyncio.sleep(3.0)  # the newest viewers reach their first keyframe
            first = await _counts(workers)
            s0, j0, t0 = _cpu_s(proc.pid), _cpu_s(janus_pid), time.monotonic()
            await asyncio.sleep(args.seconds)
            wall = time.monotonic() - t0
            s1, j1 = _cpu_s(proc.pid), _cpu_s(janus_pid)
            last = await _counts(workers)
            result = _phase(name, first, last, wall, (s1 - s0) / wall, (j1 - j0) / wall)
            print(_describe(result), flush=True)
            phases.append(result)
            return result

        # Phase 1's one viewer goes to the first process; the others join it later.
        workers[0][1].send(("add", "janus", 1))
        await asyncio.get_running_loop().run_in_executor(None, workers[0][1].recv)
        await window("1 viewer through Janus")
        if args.janus_viewers > 1:
            await add("janus", args.janus_viewers - 1)
        await window(f"{args.janus_viewers} viewers through Janus")
        if args.direct_viewers:
            await add("direct", args.direct_viewers)
            await window(f"{args.janus_viewers} through Janus + {args.direct_viewers} direct")
        broadcast = await api.call("GET", f"/v1/sessions/{sid}/broadcast")
    finally:
        if speaker is not None:
            speaker.cancel()
        for _, conn in workers:
            with contextlib.suppress(OSError):  # a viewer process that died
                conn.send(("stop",))
        for process, _ in workers:
            await asyncio.get_running_loop().run_in_executor(None, process.join, 20)
            if process.is_alive():
                process.kill()
        await api.close()
        proc.terminate()
        proc.wait(10)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average before {load_before:.2f}, after {load[0]:.2f}; "
        f"viewers {'decode' if args.decode else 'count reassembled frames (no decoding)'}; "
        f"broadcast sent {broadcast['output']['video_frames_sent']} video frames, "
        f"{broadcast['output']['datagrams_dropped']} datagrams dropped"
    )
    base = phases[0]["server_cpu_cores"]
    return {
        "bench": "fanout",
        "size": args.size,
        "decode": args.decode,
        "viewer_processes": len(workers),
        "phases": phases,
        "server_cpu_growth_janus": round(phases[1]["server_cpu_cores"] - base, 2)
        if len(phases) > 1
        else None,
        "server_cpu_growth_direct": round(phases[2]["server_cpu_cores"] - phases[1]["server_cpu_cores"], 2)
        if len(phases) > 2
        else None,
        "load_average_before": round(load_before, 2),
        "load_average_after": [round(x, 2) for x in load],
    }


async def _counts(workers: list[tuple[Any, Connection]]) -> tuple[list[tuple[str, int, int]], float]:
    loop = asyncio.get_running_loop()
    for _, conn in workers:
        conn.send(("counts",))
    counts: list[tuple[str, int, int]] = []
    cpu = 0.0
    for _, conn in workers:
        got, process_cpu = await loop.run_in_executor(None, conn.recv)
        counts += got
        cpu += process_cpu
    return counts, cpu


def _phase(
    name: str,
    first: tuple[list[tuple[str, int, int]], float],
    last: tuple[list[tuple[str, int, int]], float],
    wall: float,
    server_cpu: float,
    janus_cpu: float,
) -> dict[str, Any]:
    (c0, cpu0), (c1, cpu1) = first, last
    paths: dict[str, dict[str, Any]] = {}
    for kind in ("janus", "direct"):
        fps = [(b[1] - a[1]) / wall for a, b in zip(c0, c1, strict=False) if a[0] == kind and b[0] == kind]
        audio = [(b[2] - a[2]) / wall for a, b in zip(c0, c1, strict=False) if a[0] == kind and b[0] == kind]
        if fps:
            paths[kind] = {
                "viewers": len(fps),
                "video_fps_min": round(min(fps), 1),
                "video_fps_median": round(statistics.median(fps), 1),
                "audio_frames_per_s_median": round(statistics.median(audio), 1),
            }
    return {
        "phase": name,
        "server_cpu_cores": round(server_cpu, 2),
        "janus_cpu_cores": round(janus_cpu, 2),
        "viewer_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        **paths,
    }


def _describe(phase: dict[str, Any]) -> str:
    parts = [
        f"{phase['phase']}: server CPU {phase['server_cpu_cores']:.2f} cores, Janus {phase['janus_cpu_cores']:.2f}"
    ]
    parts.append(f"viewers' processes {phase['viewer_cpu_cores']:.2f}")
    for kind in ("janus", "direct"):
        if kind in phase:
            p = phase[kind]
            parts.append(
                f"{kind}: {p['viewers']} viewers, video fps min {p['video_fps_min']} median {p['video_fps_median']}"
            )
    return "; ".join(parts)
