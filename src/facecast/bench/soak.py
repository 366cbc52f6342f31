"""`facecast bench soak`: N sessions speaking without a pause, one WebRTC viewer each, for M minutes.

Starts `facecast serve` as a child process on a free loopback port (a temporary FACECAST_HOME, an API
token of its own), creates N sessions, starts one viewer process per session
(facecast.bench.soak_viewer: separate processes so a fault can SIGSTOP or SIGKILL one) and keeps every
session speaking by looping a speech file over its audio WebSocket in real time (40 ms chunks, the
session's own token in the Authorization header). Each second it samples the server (/proc: RSS,
threads, fds; GET /v1/sessions: frames, repeated frames, state, each viewer's A/V send offset); each
minute it prints one line; the last line printed is one JSON object with the rows and a summary.

--faults injects five faults spread over the run after a warm-up (facecast.bench.soak_faults) and the
summary says, per fault, the other sessions' lowest fps in its minute and whether the faulted session
came back.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from facecast.bench import soak_faults, soak_stats
from facecast.bench.loopback import ServerProcess, background_server, free_port
from facecast.bench.soak_viewer import ViewerProcess
from facecast.cli.errors import CliError

CHUNK_S = 0.04  # speech goes out in 40 ms chunks, paced on an absolute schedule (no drift)
FIRST_VIDEO_TIMEOUT_S = 90.0  # viewer processes import aiortc/av first: slow on a busy 2-core machine


def register(sub: argparse._SubParsersAction) -> None:
    from facecast.cli.common import add_size_option

    parser = sub.add_parser(
        "soak",
        help="N speaking sessions with a viewer each for M minutes: memory, threads, fds, fps, A/V drift",
        description="N sessions speaking without a pause, one WebRTC viewer process each, on a `facecast "
        "serve` child on loopback: prints server RSS, threads, open fds, per-session fps, repeated frames, "
        "viewer fps, failed sessions and A/V drift each minute, then one JSON line. --faults injects NaN "
        "audio, an engine exception, a stopped and a killed viewer and junk UDP, spread over the run.",
    )
    parser.add_argument("--sessions", type=int, default=4, help="speaking sessions, one viewer each")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time (fractions allowed)")
    add_size_option(parser, "frame size in pixels (square)", "default: 512", default=512)
    parser.add_argument("--fps", type=int, choices=(25, 30), default=30)
    parser.add_argument(
        "--faults", action="store_true", help="inject NaN audio, an engine exception, a stopped and a "
        "killed viewer and junk UDP, spread over the run",
    )  # fmt: skip
    parser.add_argument("--audio", type=Path, default=None, help="speech file to loop (default: demo speech)")
    # Hidden: rows shorter than a minute, for the smoke test.
    parser.add_argument("--row-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuses bad arguments with one sentence."""
    if args.sessions < 1:
        raise CliError(f"--sessions must be at least 1, not {args.sessions}")
    if not args.minutes > 0:
        raise CliError(f"--minutes must be above 0, not {args.minutes}")
    if args.faults and args.minutes < 0.5:
        raise CliError("--faults needs --minutes 0.5 or more: a warm-up, five faults and time to recover")
    if not args.row_seconds > 0:
        raise CliError(f"--row-seconds must be above 0, not {args.row_seconds}")
    if args.audio is not None and not args.audio.is_file():
        raise CliError(f"speech file {args.audio} does not exist")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="facecast-soak-") as tmp, _serve(Path(tmp), args, token) as srv:
        result = asyncio.run(measure(args, srv, token, Path(tmp)))
    print(json.dumps(result), flush=True)
    return 0


@contextmanager
def _serve(workdir: Path, args: argparse.Namespace, token: str) -> Iterator[ServerProcess]:
    port = free_port()
    config = workdir / "server.yaml"
    config.write_text(
        "render:\n  engine: warp\n"
        f"server:\n  host: 127.0.0.1\n  port: {port}\n  ice_host_addresses: ['127.0.0.1']\n"
    )
    # background_server drops FACECAST_API_TOKEN from the child's environment (its other callers want an
    # open loopback server); `env` sets it back, and the test hooks for --faults. `env` execs, so the
    # child's pid is the server's own (its /proc entries are what the soak reads).
    env = ["env", f"FACECAST_API_TOKEN={token}"] + (["FACECAST_TEST_HOOKS=1"] if args.faults else [])
    command = env + [sys.executable, "-m", "facecast", "serve", "--config", str(config)]
    command += ["--port", str(port), "--size", str(args.size), "--fps", str(args.fps)]
    with background_server("facecast serve", command, f"http://127.0.0.1:{port}", "/healthz", workdir) as srv:
        yield srv


def _speech_pcm(path: Path | None) -> bytes:
    from facecast_client import pcm_s16le

    from facecast.models.audio.decode import decode_audio

    if path is None:
        with resources.as_file(resources.files("facecast.assets") / "demo_speech.wav") as demo:
            return pcm_s16le(decode_audio(demo))
    return pcm_s16le(decode_audio(path))


async def _speak(http: aiohttp.ClientSession, url: str, token: str, pcm: bytes, errors: list[str]) -> None:
    """Loops `pcm` (s16le, 16 kHz) over the audio WebSocket in real time; reconnects if it closes."""
    chunk = int(16000 * CHUNK_S) * 2
    while True:
        try:
            async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
                drain = asyncio.ensure_future(_drain(ws, errors))
                try:
                    await ws.send_json(
                        {"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"}
                    )
                    t0, sent = time.monotonic(), 0
                    while not ws.closed:
                        for offset in range(0, len(pcm), chunk):
                            await ws.send_bytes(pcm[offset : offset + chunk])
                            sent += 1
                            await asyncio.sleep(max(0.0, t0 + sent * CHUNK_S - time.monotonic()))
                        await ws.send_json({"type": "end"})  # the socket keeps the format: loop on
                finally:
                    drain.cancel()
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            errors.append(f"audio socket: {exc!r}")
        await asyncio.sleep(1.0)


async def _drain(ws: aiohttp.ClientWebSocketResponse, errors: list[str]) -> None:
    """Reads the session's events (unread ones would pile up here); keeps error events."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT and '"error"' in msg.data:
            errors.append(msg.data[:300])


class Soak:
    """One run's live state: sessions, their speakers and viewers, samples and rows."""

    def __init__(self, args: argparse.Namespace, srv: ServerProcess, token: str, workdir: Path) -> None:
        self.args, self.srv, self.workdir = args, srv, workdir
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        self.api_token = token
        self.sids: list[str] = []
        self.tokens: list[str] = []
        self.viewers: list[list[ViewerProcess]] = []  # per session, every viewer it has had
        self.errors: list[list[str]] = []  # per session, error events and socket failures
        self.tasks: list[asyncio.Task[Any]] = []
        self.samples: list[soak_stats.Sample] = []
        self.crashed: set[int] = set()  # pids of viewers already reported as exited

    def say(self, line: str) -> None:
        print(line, flush=True)

    async def create_sessions(self, pcm: bytes) -> None:
        for i in range(self.args.sessions):
            async with self.http.post(
                self.srv.base_url + "/v1/sessions", json={"fps": self.args.fps}
            ) as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise CliError(f"the server refused session {i + 1}: {resp.status} {body}")
            self.sids.append(body["id"])
            self.tokens.append(body["token"])
            self.viewers.append([])
            self.errors.append([])
            url = f"{self.srv.base_url.replace('http', 'ws', 1)}/v1/sessions/{body['id']}/audio"
            self.tasks.append(
                asyncio.ensure_future(_speak(self.http, url, body["token"], pcm, self.errors[i]))
            )
            await self.add_viewer(i)

    async def add_viewer(self, i: int) -> None:
        if self.viewers[i]:
            self.viewers[i][-1].stopped_by_us = True  # the one it replaces was killed on purpose
        viewer = ViewerProcess(i, self.sids[i], self.workdir / f"viewer-{i}.log")
        await viewer.start(self.srv.base_url, self.api_token)
        self.viewers[i].append(viewer)

    def viewer_totals(self, i: int) -> dict[str, int]:
        """What session i's viewers (all it has had) decoded, and how often they reconnected."""
        keys = ("video", "audio", "reconnects")
        totals = {k: sum(int(v.last().get(k, 0)) for v in self.viewers[i]) for k in keys}
        return totals | {"processes": len(self.viewers[i])}

    def received(self, i: int, t: float) -> float:
        return sum(v.video_at(t) for v in self.viewers[i])

    async def wait_first_video(self) -> None:
        deadline = time.monotonic() + FIRST_VIDEO_TIMEOUT_S
        while not all(v[-1].last().get("video", 0) > 0 for v in self.viewers):
            self.check_alive()
            if time.monotonic() > deadline:
                raise CliError(f"not every viewer received video within {FIRST_VIDEO_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.5)

    def check_alive(self) -> None:
        if self.srv.process.poll() is not None:
            raise CliError(
                f"facecast serve exited with code {self.srv.process.returncode}: {self.srv.log_tail(600)}"
            )
        for i, history in enumerate(self.viewers):
            for v in history:
                if v.exited() and not v.stopped_by_us and v.pid not in self.crashed:
                    self.crashed.add(v.pid)
                    tail = v.log_path.read_text(errors="replace")[-300:].strip()
                    code = v.process.returncode if v.process else None
                    self.say(f"viewer of session {i} exited with code {code}: {tail}")

    async def sample(self) -> soak_stats.Sample:
        before = time.monotonic()
        async with self.http.get(self.srv.base_url + "/v1/sessions") as resp:
            listing = await resp.json()
        rss, threads, fds = soak_stats.proc_status(self.srv.process.pid)
        # The server counted frames somewhere during the request: stamp the sample at its middle.
        at = (before + time.monotonic()) / 2
        sample = soak_stats.Sample(at, rss, threads, fds, soak_stats.session_stats(listing))
        self.samples.append(sample)
        return sample

    def fault_targets(self) -> soak_faults.FaultTargets:
        return soak_faults.FaultTargets(
            base_url=self.srv.base_url,
            http=self.http,
            server_pid=self.srv.process.pid,
            session_ids=self.sids,
            session_tokens=self.tokens,
            viewer_pid=lambda i: self.viewers[i][-1].pid,
            replace_viewer=self.add_viewer,
        )

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for history in self.viewers:
            for viewer in history:
                await viewer.stop()
        await self.http.close()


async def _at(t: float, job: Callable[[], Awaitable[None]]) -> None:
    """Runs job() at monotonic time t (made only then: a run cut short leaves no coroutine unawaited)."""
    await asyncio.sleep(max(0.0, t - time.monotonic()))
    await job()


async def measure(args: argparse.Namespace, srv: ServerProcess, token: str, workdir: Path) -> dict[str, Any]:
    total_s = args.minutes * 60.0
    row_s = min(args.row_seconds, total_s)
    soak = Soak(args, srv, token, workdir)
    faults = soak_faults.plan(total_s, args.sessions) if args.faults else []
    soak.say(
        f"soak: {args.sessions} sessions at {args.size} px {args.fps} fps for {args.minutes:g} min, "
        f"server pid {srv.process.pid} on {srv.base_url}" + (", with faults" if faults else "")
    )
    rows: list[dict[str, Any]] = []
    try:
        await soak.create_sessions(_speech_pcm(args.audio))
        await soak.wait_first_video()
        start = (await soak.sample()).t
        targets = soak.fault_targets()
        for fault in faults:
            job = functools.partial(soak_faults.inject, fault, targets, soak.say, start)
            soak.tasks.append(asyncio.ensure_future(_at(start + fault.at_s, job)))
        row_start, tick = start, 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 1.0 - time.monotonic()))
            soak.check_alive()
            now = (await soak.sample()).t
            if now - row_start >= row_s - 0.5 or now - start >= total_s - 0.5:
                rows.append(
                    soak_stats.row(len(rows) + 1, soak.samples, row_start, now, soak.sids, soak.received)
                )
                soak.say(soak_stats.row_line(rows[-1]))
                row_start = now
            if now - start >= total_s - 0.5:
                break
        end = soak.samples[-1].t
    finally:
        await soak.close()
    viewers = [soak.viewer_totals(i) for i in range(len(soak.sids))]
    result = soak_stats.summary(rows, soak.samples, sum(v["video"] for v in viewers))
    result["viewers"] = viewers
    # Error events on the speaking sockets (an engine fault should show one), and the first of them.
    result["audio_errors"] = [len(e) for e in soak.errors]
    result["audio_error_examples"] = [e[:300] for errors in soak.errors for e in errors[:2]]
    # A fault's recovery is judged just before the next fault (the last one's at the end of the run).
    checks = [nxt.started or end for nxt in faults[1:]] + [end] * bool(faults)
    result["faults"] = [
        soak_stats.fault_report(f, soak.samples, soak.sids, soak.received, check_at)
        for f, check_at in zip(faults, checks, strict=True)
    ]
    for report in result["faults"]:
        soak.say(
            f"fault {report['fault']} at {report['at_s']} s: others' min fps emitted "
            f"{report.get('others_min_emitted_fps')} received {report.get('others_min_received_fps')}; "
            f"faulted session recovered: {report['recovered']}"
        )
    return {
        "bench": "soak",
        "sessions": args.sessions,
        "minutes": args.minutes,
        "size": args.size,
        "fps": args.fps,
        "row_seconds": row_s,
        "rows": rows,
        "summary": result,
    }
