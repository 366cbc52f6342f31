"""`facecast bench live_latency`: live-server latencies, measured where frames leave the server.

Runs a real server on 127.0.0.1 in this process with one session and a Python aiortc viewer:
  - first frame: POST of the WebRTC offer → first video frame received by the viewer;
  - speech onset: the first PCM chunk of an utterance (starting at its speech onset) sent over the
    WebSocket → the first frame with an open mouth handed to the viewer's video track (p50/p95);
  - interrupt: the interrupt message sent → the first idle frame (new generation, no speech,
    mouth closed) handed to the video track (p50/p95).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TRIALS = 12


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "live_latency", help="live server: speech → open mouth, interrupt → idle, first frame"
    )
    parser.add_argument("--audio", type=Path, default=None, help="speech file (default: espeak-ng sentence)")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--home", type=Path, default=None, help="facecast home (avatar store); default: temporary"
    )
    parser.set_defaults(func=run)


def mouth_open_cm(out: Any) -> float:
    """Inner-lip gap of a frame's driven mesh (MediaPipe vertices 13 upper, 14 lower)."""
    offsets = out.motion.mesh_offsets
    return float(abs(offsets[14, 1] - offsets[13, 1]))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(measure(args))
    print(json.dumps(result))
    return 0


async def _speech(path: Path | None) -> np.ndarray:
    from facecast.models.audio.decode import decode_audio
    from facecast.server.tts import speak

    audio = decode_audio(path) if path else await speak("Well, hello there. How are you doing today?")
    env = np.convolve(np.abs(audio), np.ones(160) / 160, mode="same")
    onset = int(np.argmax(env > 0.1 * env.max()))
    return audio[onset:]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from facecast_client import FacecastClient, pcm_s16le

    from facecast.config import Settings
    from facecast.server.runner import running_server

    home = args.home or Path(tempfile.mkdtemp(prefix="facecast-bench-"))
    settings = Settings(home=home)
    settings.server.ice_host_addresses = ["127.0.0.1"]
    settings.render.size = args.size
    speech = await _speech(args.audio)
    onset_s: list[float] = []
    interrupt_s: list[float] = []
    async with running_server(settings) as srv:
        api = FacecastClient(srv.url)
        sid = (await api.create_session(fps=args.fps))["id"]
        await asyncio.sleep(1.0)
        t_offer = time.monotonic()
        viewer = await api.watch(sid)
        await asyncio.wait_for(viewer.received.first_video_at.wait(), 20)
        first_frame_ms = (viewer.received.video[0][0] - t_offer) * 1000
        live = srv.registry.get(sid)
        track = next(p.output.video for p in live.peers.values() if p.output and p.output.video)
        ws = await api.audio_socket(sid)

        async def wait_event(kind: str) -> None:
            while True:
                msg = await asyncio.wait_for(ws.receive_json(), 30)
                if msg["type"] == kind:
                    return

        await asyncio.sleep(1.0)
        idle_open = max(mouth_open_cm(out) for _, out in track.sent_log)
        threshold = None
        for trial in range(args.trials + 1):
            await asyncio.sleep(0.6)  # idle in between
            await ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "format": "s16le"})
            t0 = time.monotonic()
            await ws.send_bytes(pcm_s16le(speech))
            await ws.send_json({"type": "end"})
            await wait_event("speaking_started")
            await asyncio.sleep(1.2)
            gen_before = live.runtime.generation
            t_int = time.monotonic()
            await ws.send_json({"type": "interrupt"})
            await wait_event("playback_finished")
            await asyncio.sleep(0.3)
            sent = [(t, out) for t, out in track.sent_log if t >= t0]
            speaking = [mouth_open_cm(out) for t, out in sent if out.speech and t < t_int]
            if threshold is None:  # first utterance calibrates "open": a quarter of its wide openings
                threshold = idle_open + 0.25 * (float(np.percentile(speaking, 95)) - idle_open)
                continue
            opened = next((t for t, out in sent if out.speech and mouth_open_cm(out) > threshold), None)
            idle = next(
                (
                    t
                    for t, out in sent
                    if t >= t_int
                    and out.generation > gen_before
                    and not out.speech
                    and mouth_open_cm(out) <= threshold
                ),
                None,
            )
            if opened is not None:
                onset_s.append(opened - t0)
            if idle is not None:
                interrupt_s.append(idle - t_int)
            shown = [
                f"{(t - ref) * 1000:.0f} ms" if t is not None else "none"
                for t, ref in ((opened, t0), (idle, t_int))
            ]
            print(f"trial {trial}: onset→open mouth {shown[0]}, interrupt→idle {shown[1]}", flush=True)
        await ws.close()
        await viewer.close()
        await api.close()
    result = {
        "bench": "live_latency",
        "size": args.size,
        "fps": args.fps,
        "lookahead_frames": live.runtime.lookahead_frames,
        "first_frame_after_offer_ms": round(first_frame_ms, 1),
        "speech_onset_to_open_mouth_ms": {
            "p50": round(pct(onset_s, 50), 1),
            "p95": round(pct(onset_s, 95), 1),
            "n": len(onset_s),
        },
        "interrupt_to_idle_frame_ms": {
            "p50": round(pct(interrupt_s, 50), 1),
            "p95": round(pct(interrupt_s, 95), 1),
            "n": len(interrupt_s),
        },
    }
    print(f"first frame after offer: {result['first_frame_after_offer_ms']} ms")
    print(
        f"speech onset → open mouth leaving the server: p50 {result['speech_onset_to_open_mouth_ms']['p50']} ms, "
        f"p95 {result['speech_onset_to_open_mouth_ms']['p95']} ms"
    )
    print(
        f"interrupt → first idle frame leaving the server: p50 {result['interrupt_to_idle_frame_ms']['p50']} ms, "
        f"p95 {result['interrupt_to_idle_frame_ms']['p95']} ms"
    )
    return result
