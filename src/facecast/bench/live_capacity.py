"""`facecast bench live_capacity`: N concurrent speaking sessions on one server.

Starts `facecast serve` in a child process (so its CPU use is measured alone), creates N
sessions, attaches one Python aiortc viewer to each (this process; it decodes what it gets) and
keeps every session speaking by pushing speech over its WebSocket in real time; with --push, each session
also pushes live to an RTMP server (nginx-rtmp on loopback, started here); with --cluster, the server is a
cluster front door and its CPU figure adds up the front door and its engine workers (Ray's own daemons
not counted). Prints per-session
fps as rendered (frames whose image was rendered; an overloaded worker may repeat the previous image
instead, which keeps audio at full speed but is not counted here), as emitted (rendered + repeated)
and as received by each viewer, the CPU use of the server and of the viewers, the mean render and
encode time per frame, and the machine's load average. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np

if TYPE_CHECKING:
    from facecast.bench.rtmp_server import NginxRtmp

CLK_TCK = os.sysconf("SC_CLK_TCK")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "live_capacity", help="per-session fps and CPU with N concurrent speaking sessions"
    )
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--audio", type=Path, default=None, help="speech file (default: espeak-ng sentence)")
    parser.add_argument(
        "--push",
        action="store_true",
        help="each session also pushes to RTMP (nginx-rtmp, started on loopback)",
    )
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="WHERE",
        help="serve --cluster WHERE (e.g. local:2): sessions on Ray workers",
    )
    parser.add_argument(
        "--decode", action=argparse.BooleanOptionalAction, default=True,
        help="the viewers decode what they receive (--no-decode: count reassembled frames only, so the "
        "bench's own viewers do not take the cores the server is measured on)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.push:
        print(json.dumps(asyncio.run(measure(args))))
        return 0
    from facecast.bench.rtmp_server import NginxRtmp

    with tempfile.TemporaryDirectory(prefix="facecast-rtmp-") as work, NginxRtmp(Path(work)) as rtmp:
        print(json.dumps(asyncio.run(measure(args, rtmp))))
    return 0


def _cpu_s(*pids: int) -> float:
    """CPU seconds of `pids` and their live children (push processes)."""
    wanted = {str(p) for p in pids}
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if stat.parent.name in wanted or fields[1] in wanted:  # one of them, or a child (ppid)
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit("facecast serve exited early")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("facecast serve did not come up")


async def _speak_forever(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, seconds: float) -> None:
    while True:
        await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
        await ws.send_bytes(pcm)
        await ws.send_json({"type": "end"})
        await asyncio.sleep(seconds)  # real time: the next utterance as this one ends


async def measure(args: argparse.Namespace, rtmp: NginxRtmp | None = None) -> dict[str, Any]:
    if not args.decode:
        from facecast.bench.counting_receivers import count_instead_of_decoding

        count_instead_of_decoding()
    from facecast_client import FacecastClient, Viewer, pcm_s16le

    from facecast.bench.live_latency import _speech

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure here
    speech = await _speech(args.audio)
    reference_ms = _reference_render_ms(speech, args.size)
    pcm = pcm_s16le(speech)
    home = tempfile.mkdtemp(prefix="facecast-bench-")
    config = Path(home) / "bench.yaml"  # the bench asks for its sessions: no admission limit in the way
    config.write_text(f"server:\n  max_sessions: {args.sessions}\n  refuse_when_late: false\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "facecast",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--home",
        home,
        "--ice-host",
        "127.0.0.1",
        "--size",
        str(args.size),
        "--fps",
        str(args.fps),
        *(["--cluster", args.cluster] if args.cluster else []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = FacecastClient(url)
    viewers: list[Viewer] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await _wait_up(url, proc)
        sids = [(await api.create_session())["id"] for _ in range(args.sessions)]
        for sid in sids:
            viewers.append(await api.watch(sid, Viewer(keep_frames=False)))
            ws = await api.audio_socket(sid)
            tasks.append(asyncio.ensure_future(_speak_forever(ws, pcm, speech.size / 16000)))
            if rtmp is not None:
                await api.push(sid, rtmp.url(f"{rtmp.stream_key}-{sid}"))
        await asyncio.sleep(3.0)  # warm up
        pids = [proc.pid]
        if args.cluster:  # the engine workers are Ray's processes, not the front door's children
            pids += [w["pid"] for w in (await api.call("GET", "/v1/cluster"))["workers"] if w.get("pid")]
        before = {s["id"]: s for s in (await api.call("GET", "/v1/sessions"))["sessions"]}
        metrics0 = await api.call("GET", "/metrics")
        received = [v.counts["video"] for v in viewers]
        cpu0, own0, t0 = _cpu_s(*pids), time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - t0
        cpu_server = (_cpu_s(*pids) - cpu0) / wall
        cpu_viewers = (time.process_time() - own0) / wall
        after = {s["id"]: s for s in (await api.call("GET", "/v1/sessions"))["sessions"]}
        metrics = await api.call("GET", "/metrics")
        pushes = [(await api.outputs(sid)) for sid in sids] if rtmp is not None else []
    finally:
        for task in tasks:
            task.cancel()
        for viewer in viewers:
            await viewer.close()
        await api.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            print("facecast serve did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
            proc.kill()
            proc.wait(10)
    per_session = []
    for i, sid in enumerate(sids):
        emitted = (after[sid]["frames"] - before[sid]["frames"]) / wall
        rendered = (after[sid]["frames_rendered"] - before[sid]["frames_rendered"]) / wall
        skipped = after[sid]["frames_skipped"] - before[sid]["frames_skipped"]
        got = (viewers[i].counts["video"] - received[i]) / wall
        pushed = _push_fps(before[sid], after[sid], wall)
        per_session.append(
            {
                "session": sid,
                "rendered_fps": round(rendered, 1),
                "emitted_fps": round(emitted, 1),
                "received_fps": round(got, 1),
                "skipped_frames": skipped,
                **({"pushed_fps": pushed, "push": pushes[i][0]} if pushes else {}),
            }
        )
        print(
            f"session {i}: rendered {rendered:.1f} fps, emitted {emitted:.1f} fps "
            f"({skipped} repeated images), received by its viewer {got:.1f} fps"
            + (
                f", pushed {pushed:.1f} fps ({pushes[i][0]['state']}, {pushes[i][0]['bitrate_kbps']} kbit/s)"
                if pushes
                else ""
            )
        )
    stage_ms = {
        stage: round(_stage_mean_s(metrics0, metrics, stage) * 1000, 2) for stage in ("render", "encode")
    }
    load = os.getloadavg()
    dropped = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("facecast_frames_dropped_total") and 'kind="video"' in line
    )
    print(
        f"server CPU: {cpu_server:.2f} cores; viewers (this process): {cpu_viewers:.2f} cores; "
        f"machine: {os.cpu_count()} cores; video frames dropped for slow viewers: {dropped:.0f}"
    )
    print(
        f"mean per frame: render {stage_ms['render']} ms, shared video encode {stage_ms['encode']} ms; "
        f"load average (1 min) before: {load_before:.2f}, after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"this machine before the run: one frame rendered in {reference_ms:.2f} ms of CPU on an idle core")
    return {
        "bench": "live_capacity",
        "sessions": args.sessions,
        "cluster": args.cluster,
        "viewers_decode": args.decode,
        "size": args.size,
        "fps": args.fps,
        "per_session": per_session,
        "min_rendered_fps": min(p["rendered_fps"] for p in per_session),
        "min_emitted_fps": min(p["emitted_fps"] for p in per_session),
        "min_received_fps": min(p["received_fps"] for p in per_session),
        **({"min_pushed_fps": min(p["pushed_fps"] for p in per_session)} if pushes else {}),
        "server_cpu_cores": round(cpu_server, 2),
        "viewer_cpu_cores": round(cpu_viewers, 2),
        "video_frames_dropped": dropped,
        "skipped_frames": sum(p["skipped_frames"] for p in per_session),
        "stage_ms": stage_ms,
        "reference_render_ms": round(reference_ms, 2),
        "load_average_before": round(load_before, 2),
        "load_average_after": [round(x, 2) for x in load],
    }


def _reference_render_ms(speech: np.ndarray, size: int, frames: int = 90) -> float:
    """CPU ms per frame of the default avatar speaking, rendered here on one core before the run: this
    shared machine's speed drifts by tens of percent within an hour, so runs compare only beside it."""
    import cv2

    from facecast.models.avatar import AvatarStore
    from facecast.models.render.engine import WarpEngine

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as the server renders (server/registry.py)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            head = WarpEngine(AvatarStore(Path(tmp)).default(), size=size)
            motions = [head.composer.compose(m) for m in head.driver.push(speech)][:frames]
            t0 = time.thread_time()
            for motion in motions:
                head.renderer.render(motion)
            return 1000 * (time.thread_time() - t0) / max(len(motions), 1)
    finally:
        cv2.setNumThreads(threads)


def _push_fps(before: dict[str, Any], after: dict[str, Any], wall: float) -> float:
    """Frames a session's (first) push sent per second over the window; 0 without one."""
    sent = [
        (b["frames_sent"], a["frames_sent"])
        for b, a in zip(before.get("outputs", []), after.get("outputs", []), strict=False)
    ]
    return round((sent[0][1] - sent[0][0]) / wall, 1) if sent else 0.0


def _stage_mean_s(before: str, after: str, stage: str) -> float:
    """Mean of facecast_stage_seconds{stage} over the window between two /metrics scrapes."""

    def sum_count(text: str) -> tuple[float, float]:
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("facecast_stage_seconds_") and f'stage="{stage}"' in line:
                kind = line.split("{", 1)[0].rsplit("_", 1)[1]
                found[kind] = found.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])  # summed over workers
        return found.get("sum", 0.0), found.get("count", 0.0)

    (s0, n0), (s1, n1) = sum_count(before), sum_count(after)
    return (s1 - s0) / (n1 - n0) if n1 > n0 else 0.0
