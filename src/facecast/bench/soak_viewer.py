"""One WebRTC viewer of a soak session, run as its own process so a fault run can SIGSTOP or SIGKILL it.

    python -m facecast.bench.soak_viewer --url http://127.0.0.1:PORT --session SID

The API token comes from FACECAST_API_TOKEN (kept off the command line, where `ps` shows it). The viewer
offers recvonly video and audio over POST /v1/sessions/{sid}/webrtc (aiortc, no ICE servers, host
candidates on 127.0.0.1 only), decodes what it gets and prints one JSON line a second:

    {"t": s since start, "state": pc state, "video": frames decoded, "audio": frames decoded,
     "video_fps": last second, "reconnects": n}

Counts are totals over the process's life. aiortc hands a track's frames over only once decoded, so
"video" counts frames received and decoded alike. (Its RTP packet counts are not used: getStats keeps
one SSRC per receiver, the video's or its retransmissions'.) A connection that fails (a viewer stopped long enough for
ICE consent to lapse) or stalls is replaced by a new offer, as a browser page would retry.

`ViewerProcess` is the parent's handle on one such process: it starts it and keeps its lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STALL_S = 10.0  # a connected viewer with no new video for this long reconnects
REPORT_S = 1.0


async def run_viewer(url: str, session_id: str, token: str | None) -> None:
    import aiohttp
    from facecast_client import Viewer

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start, parent = time.monotonic(), os.getppid()
    base = {"video": 0, "audio": 0}  # totals of connections closed before
    reconnects = -1
    async with aiohttp.ClientSession(headers=headers) as http:
        while True:
            reconnects += 1
            viewer = Viewer(keep_frames=False)
            try:
                offer = {"sdp": await viewer.offer(), "type": "offer"}
                async with http.post(f"{url}/v1/sessions/{session_id}/webrtc", json=offer) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"offer refused: {resp.status} {await resp.text()}")
                    await viewer.accept((await resp.json())["sdp"])
            except Exception as exc:
                print(f"soak_viewer: {exc}", file=sys.stderr, flush=True)
                await viewer.close()
                if os.getppid() != parent:
                    return
                await asyncio.sleep(1.0)
                continue
            last_video, stalled, prev = 0, 0.0, time.monotonic()
            while True:
                await asyncio.sleep(REPORT_S)
                now = time.monotonic()
                video = viewer.counts["video"]
                line = {
                    "t": round(now - start, 2),
                    "state": viewer.pc.connectionState,
                    "video": base["video"] + video,
                    "audio": base["audio"] + viewer.counts["audio"],
                    "video_fps": video - last_video,  # over one report period (1 s)
                    "reconnects": reconnects,
                }
                print(json.dumps(line), flush=True)
                # Stall time counts only while this process runs: after a SIGSTOP the first wake-up
                # comes before the buffered frames are decoded, and that is no stall.
                stalled = 0.0 if video != last_video else stalled + min(now - prev, 2 * REPORT_S)
                last_video, prev = video, now
                if viewer.pc.connectionState in ("failed", "closed") or stalled > STALL_S:
                    break
                if os.getppid() != parent:  # the bench is gone (killed): do not linger
                    await viewer.close()
                    return
            base["video"] += viewer.counts["video"]
            base["audio"] += viewer.counts["audio"]
            await viewer.close()


@dataclass
class ViewerProcess:
    """The parent's handle on one viewer process: its reports, stamped with the parent's clock."""

    session_index: int
    session_id: str
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    reports: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stopped_by_us: bool = False  # SIGKILLed by a fault or at the end: not a crash
    _reader: asyncio.Task[None] | None = None
    _log: IO[bytes] | None = None

    async def start(self, url: str, token: str) -> None:
        env = dict(os.environ, FACECAST_API_TOKEN=token, PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "facecast.bench.soak_viewer", "--url", url, "--session", self.session_id,
            stdout=asyncio.subprocess.PIPE, stderr=self._log, env=env,
            start_new_session=True,  # a signal meant for the bench (Ctrl-C) does not hit it half-way
        )  # fmt: skip
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                self.reports.append((time.monotonic(), json.loads(raw)))
            except ValueError:
                continue

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def video_at(self, t: float) -> float:
        """Video frames decoded by time t: interpolated between the reports around it (they come once a
        second, too coarse for short windows); across a gap (a stopped viewer) the last one before t."""
        before: tuple[float, float] = (0.0, 0.0)
        for at, report in self.reports:
            count = float(report["video"])
            if at > t:
                if before[0] and at - before[0] <= 2 * REPORT_S:
                    return before[1] + (count - before[1]) * (t - before[0]) / (at - before[0])
                break
            before = (at, count)
        return before[1]

    def last(self) -> dict[str, Any]:
        return self.reports[-1][1] if self.reports else {}

    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, sig)

    async def stop(self) -> None:
        """SIGCONT (in case it is stopped), SIGTERM, then SIGKILL after 3 s."""
        self.stopped_by_us = True
        if self.process is not None and self.process.returncode is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 3.0)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
        if self._log is not None:
            self._log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecast.bench.soak_viewer", description=__doc__)
    parser.add_argument("--url", required=True, help="server base URL (loopback)")
    parser.add_argument("--session", required=True, help="session id")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit quietly when the bench ends
    try:
        asyncio.run(run_viewer(args.url.rstrip("/"), args.session, os.environ.get("FACECAST_API_TOKEN")))
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
