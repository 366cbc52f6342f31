"""`facecast bench av_sync`: A/V sync at the output tracks over a long simulated session.

A session with the real engine runs faster than real time (free-running clock) for --minutes of
media, speaking a file over and over with pauses; its aiortc video track is read frame by frame and
its audio track (20 ms chunks at 48 kHz) as far as each frame's audio reaches. For each video frame:
|video pts - audio pts| of the same media instant, whether the audio sent for frame k is exactly the
speech that frame k was rendered from (every third 48 kHz sample is a 16 kHz input sample), and the lag
that best correlates the mouth opening with the speech loudness in the first and the last minute
(drift would move it). Then a real-time stretch measures the send-time offset between the two
tracks. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from facecast.bench.live_latency import mouth_open_cm
from facecast.outputs.audio_packets import pts_of


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("av_sync", help="A/V timestamps at the tracks over a simulated long session")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated media duration")
    parser.add_argument(
        "--realtime-seconds", type=float, default=10.0, help="real-time stretch for send offsets"
    )
    parser.add_argument("--audio", type=Path, default=None, help="speech file (default: espeak-ng sentence)")
    parser.add_argument("--size", type=int, default=128, help="frame size (small: the check is about timing)")
    parser.add_argument("--fps", type=int, default=30)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(measure(args))))
    return 0


def _seconds(frame: Any) -> float:
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base)


def best_lag(opening: np.ndarray, rms: np.ndarray, max_lag: int = 4) -> int:
    def corr(lag: int) -> float:
        a, b = (opening[lag:], rms[: rms.size - lag]) if lag >= 0 else (opening[:lag], rms[-lag:])
        return float(np.corrcoef(a, b)[0, 1])

    return max(range(-max_lag, max_lag + 1), key=corr)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from facecast.bench.live_latency import _speech
    from facecast.frames import frame_samples
    from facecast.models.avatar import AvatarStore
    from facecast.models.render.engine import WarpEngine
    from facecast.outputs.webrtc import WebRtcOutput
    from facecast.stream.clock import FreeRunningClock
    from facecast.stream.session import SessionRuntime

    avatar = AvatarStore(Path(tempfile.mkdtemp(prefix="facecast-bench-"))).default()
    speech = await _speech(args.audio)
    program = np.concatenate([speech, np.zeros(16000, np.float32)])  # speech, then a second of silence
    n_frames = int(args.minutes * 60 * args.fps)
    reps = int(np.ceil(frame_samples(n_frames + 10, args.fps)[1] / program.size))
    expected = np.tile(program, reps)

    session = SessionRuntime(
        WarpEngine(avatar, fps=args.fps, size=args.size), clock=FreeRunningClock(args.fps)
    )
    session.queue.max_queued_s = reps * program.size / 16000 + 1  # the whole simulated program at once
    for _ in range(reps):  # queued up front: the timeline is exactly the program, repeated
        session.say(program, "bench")
    viewer = session.add_output(WebRtcOutput(keep_all=True))  # simulation: keep every frame
    assert viewer.video is not None and viewer.audio is not None
    video, audio = viewer.video, viewer.audio
    t_start = time.perf_counter()
    session.start()
    pts_err, content_err, opening, rms = 0.0, 0.0, [], []
    received = np.empty(0, np.int16)  # audio sent and not yet compared, 48 kHz, from received_pts on
    received_pts: int | None = None
    for k in range(n_frames):
        v = await video.recv()
        out = video.last_sent
        assert out is not None and out.index == k
        lo, hi = frame_samples(k, args.fps)
        while received_pts is None or received_pts + received.size < 3 * hi:
            a = await audio.recv()
            assert isinstance(a, av.AudioFrame)  # no codec negotiated: raw 20 ms chunks
            if received_pts is None:
                received_pts = pts_of(a)
            if a.pts != received_pts + received.size:
                raise RuntimeError(f"audio chunk at {a.pts} where {received_pts + received.size} was due")
            received = np.concatenate([received, a.to_ndarray().reshape(-1)])
        # The audio timeline is contiguous (checked above), so sample 3*lo sits at its own offset.
        pts_err = max(pts_err, abs(_seconds(v) - 3 * lo / 48000))
        sent = received[3 * lo - received_pts : 3 * hi - received_pts : 3].astype(np.float32) / 32767.0
        received, received_pts = received[3 * hi - received_pts :], 3 * hi
        content_err = max(content_err, float(np.abs(sent - expected[lo:hi]).max()))
        opening.append(mouth_open_cm(out))
        rms.append(float(np.sqrt(np.mean(expected[lo:hi] ** 2))))
        if k and k % (args.fps * 60) == 0:
            print(f"  {k / args.fps / 60:.0f} min simulated", flush=True)
    sim_s = time.perf_counter() - t_start
    await session.close()
    minute = args.fps * 60
    op, rm = np.array(opening), np.array(rms)
    lag_first, lag_last = best_lag(op[:minute], rm[:minute]), best_lag(op[-minute:], rm[-minute:])

    live = SessionRuntime(WarpEngine(avatar, fps=args.fps, size=args.size))
    for _ in range(int(args.realtime_seconds) + 1):
        live.say(program, "bench")
    viewer = live.add_output(WebRtcOutput())
    assert viewer.video is not None and viewer.audio is not None
    live.start()
    offsets = []

    async def drain_audio() -> None:
        assert viewer.audio is not None
        while True:
            await viewer.audio.recv()

    audio_task = asyncio.ensure_future(drain_audio())
    for _ in range(int(args.realtime_seconds * args.fps)):
        await viewer.video.recv()
        offsets.append(viewer.av_offset_s() or 0.0)
    audio_task.cancel()
    await live.close()
    result = {
        "bench": "av_sync",
        "simulated_minutes": args.minutes,
        "frames": n_frames,
        "simulation_wall_s": round(sim_s, 1),
        "max_pts_difference_ms": round(pts_err * 1000, 3),
        "max_audio_content_error": round(content_err, 5),
        "mouth_vs_loudness_best_lag_frames": {"first_minute": lag_first, "last_minute": lag_last},
        "realtime_send_offset_ms": {
            "p50": round(float(np.percentile(np.abs(offsets), 50)) * 1000, 2),
            "max": round(float(np.max(np.abs(offsets))) * 1000, 2),
        },
    }
    print(f"{n_frames} frames ({args.minutes} min of media) in {sim_s:.1f} s")
    print(f"max |video pts - audio pts| for the same frame: {result['max_pts_difference_ms']} ms")
    print(
        f"max error of the audio sent with each frame vs the speech it was rendered from: {content_err:.5f}"
    )
    print(f"mouth-vs-loudness best lag: first minute {lag_first}, last minute {lag_last} frames")
    print(
        f"real-time send offset video-audio: p50 {result['realtime_send_offset_ms']['p50']} ms, "
        f"max {result['realtime_send_offset_ms']['max']} ms"
    )
    return result
