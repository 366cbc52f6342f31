"""The faults `facecast bench soak --faults` injects, one of each, spread over the run.

(a) nan: one session gets a float32 PCM chunk holding a NaN over a second audio WebSocket;
(b) engine: the server's test hook raises inside one session's engine (POST .../faults, needs
    FACECAST_TEST_HOOKS=1 in the server's environment);
(c) stop: one viewer process is SIGSTOPped for up to 60 s, then SIGCONTed;
(d) kill: another viewer is SIGKILLed and a replacement started;
(e) udp: random datagrams to every UDP port the server holds (its ICE sockets), on 127.0.0.1 only.

Everything stays on loopback. Each fault's time is recorded so the summary can say what the other
sessions did meanwhile and whether the faulted one came back.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

FAULT_KINDS = ("nan", "engine", "stop", "kill", "udp")
STOP_MAX_S = 60.0
JUNK_DATAGRAMS = 300  # per port
LOOPBACK_HEX = {"0100007F", "00000000"}  # 127.0.0.1 and 0.0.0.0 as /proc/net/udp writes them


@dataclass
class Fault:
    kind: str
    at_s: float  # planned, from the start of the measurement
    session: int | None  # the faulted session's index (None: every session, for udp)
    window_s: float  # "the minute of the fault": others' fps are measured over [t, t + window_s]
    stop_s: float = 0.0  # SIGSTOP duration (stop only)
    started: float | None = None  # monotonic time it was injected
    ended: float | None = None  # monotonic time it was over (SIGCONT for stop)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def plan(total_s: float, sessions: int) -> list[Fault]:
    """Five faults after a warm-up (a minute, less in a short run), each with its own slot.

    The last slot is followed by a tail, so the last fault's recovery is seen too.
    """
    warmup = min(60.0, 0.2 * total_s)
    tail = min(60.0, 0.15 * total_s)
    slot = (total_s - warmup - tail) / len(FAULT_KINDS)
    window = min(60.0, slot)
    faults = []
    for i, kind in enumerate(FAULT_KINDS):
        target = None if kind == "udp" else i % sessions
        fault = Fault(kind, warmup + i * slot, target, window)
        if kind == "stop":
            fault.stop_s = min(STOP_MAX_S, 0.6 * slot)
        faults.append(fault)
    return faults


async def nan_audio(base_url: str, session_id: str, token: str) -> str:
    """A start in f32le, then 800 float32 zeros with one NaN, then end; over a second WebSocket."""
    samples = np.zeros(800, dtype="<f4")
    samples[400] = np.nan
    headers = {"Authorization": f"Bearer {token}"}
    events: list[str] = []
    closed: int | None = None
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.ws_connect(f"{base_url}/v1/sessions/{session_id}/audio") as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "f32le"})
            await ws.send_bytes(samples.tobytes())
            await ws.send_json({"type": "end"})
            try:  # what the server says back within a second: events, perhaps a close
                async with asyncio.timeout(1.0):
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            events.append(str(msg.json().get("type")))
                    closed = ws.close_code  # read only here: a timed-out read sets 1006 itself
            except TimeoutError:
                pass
    return f"events back: {', '.join(events) or 'none'}; " + (
        f"the server closed the socket ({closed})" if closed is not None else "the socket stayed open"
    )


async def engine_exception(http: aiohttp.ClientSession, base_url: str, session_id: str) -> str:
    """The test hook's engine fault; a 404 (no such route yet, or hooks off) is reported, not fatal."""
    async with http.post(f"{base_url}/v1/sessions/{session_id}/faults", json={"kind": "engine"}) as resp:
        body = (await resp.text())[:200]
    return f"POST .../faults answered {resp.status}" + ("" if resp.status == 202 else f": {body}")


def server_udp_ports(pid: int) -> list[int]:
    """The UDP ports, bound on 127.0.0.1 or any address, of sockets the process holds open.

    /proc/PID/net/udp lists every socket of the network namespace; the process's own are those whose
    inode one of its fds points at (socket:[inode]).
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open(f"/proc/{pid}/net/udp") as table:
        next(table)  # header
        for line in table:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[9] in inodes and address in LOOPBACK_HEX:
                ports.add(int(port, 16))
    return sorted(ports)


def junk_datagrams(count: int, rng: random.Random) -> list[bytes]:
    """Random bytes of random lengths; some start like RTP (0x80) or DTLS (0x16) or STUN (0x00), so the
    junk reaches each of the server's demultiplexing paths, not only the drop-unknown one."""
    leads = [b"", b"\x80", b"\x16\xfe\xfd", b"\x00\x01"]
    return [rng.choice(leads) + rng.randbytes(rng.randint(1, 1200)) for _ in range(count)]


def udp_junk(pid: int) -> str:
    ports = server_udp_ports(pid)
    rng = random.Random(12)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for port in ports:
            for payload in junk_datagrams(JUNK_DATAGRAMS, rng):
                sock.sendto(payload, ("127.0.0.1", port))
                sent += 1
    return f"{sent} datagrams to {len(ports)} UDP ports {ports}"


@dataclass
class FaultTargets:
    """What the injections act on, given by the soak run."""

    base_url: str
    http: aiohttp.ClientSession  # carries the API token
    server_pid: int
    session_ids: list[str]
    session_tokens: list[str]
    viewer_pid: Callable[[int], int]  # session index → its current viewer's pid
    replace_viewer: Callable[[int], Awaitable[None]]  # session index → start a new viewer for it


async def inject(fault: Fault, targets: FaultTargets, say: Callable[[str], None], t0: float) -> None:
    """Injects one fault (a stop lasts fault.stop_s) and says so, with its time from the start."""
    fault.started = time.monotonic()
    sid = targets.session_ids[fault.session] if fault.session is not None else ""
    where = f"session {fault.session}" if fault.session is not None else "server"
    say(f"fault {fault.kind} at {fault.started - t0:.1f} s on {where}")
    try:
        if fault.kind == "nan":
            fault.note = await nan_audio(targets.base_url, sid, targets.session_tokens[fault.session or 0])
        elif fault.kind == "engine":
            fault.note = await engine_exception(targets.http, targets.base_url, sid)
        elif fault.kind == "stop":
            pid = targets.viewer_pid(fault.session or 0)
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(fault.stop_s)
            os.kill(pid, signal.SIGCONT)
            fault.note = f"viewer pid {pid} stopped for {fault.stop_s:.0f} s"
        elif fault.kind == "kill":
            pid = targets.viewer_pid(fault.session or 0)
            os.kill(pid, signal.SIGKILL)
            await targets.replace_viewer(fault.session or 0)
            fault.note = f"viewer pid {pid} killed, replacement pid {targets.viewer_pid(fault.session or 0)}"
        elif fault.kind == "udp":
            fault.note = udp_junk(targets.server_pid)
    except (OSError, aiohttp.ClientError) as exc:  # a fault that could not be injected is reported
        fault.note = f"not injected: {exc!r}"
    fault.ended = time.monotonic()
    say(f"fault {fault.kind} done at {fault.ended - t0:.1f} s: {fault.note}")
