"""`facecast bench warp`: per-stage milliseconds and fps of the warp engine, and a 10 s clip render.

Stages run on one core (OpenCV single-threaded) to check the ≥ 60 fps budget per session; the clip
render then uses the machine as `facecast render` does.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

CHUNK_SAMPLES = 320  # 20 ms, the size of a WebRTC audio packet


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "warp", help="warp renderer speed: per-stage ms, fps on one core, 10 s clip render"
    )
    parser.add_argument("--avatar", type=Path, help="portrait photo (default: the bundled one)")
    parser.add_argument("--audio", type=Path, help="speech file (default: the bundled demo, looped to 10 s)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=300, help="frames timed per stage")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument(
        "--background",
        default="keep",
        help="keep, color:#RRGGBB, image:PATH, blur or transparent (timed as the `background` stage)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import tempfile

    import cv2

    from facecast.cli.render import render_warp
    from facecast.frames import AUDIO_RATE_HZ
    from facecast.models.audio.decode import decode_audio
    from facecast.models.avatar import AvatarStore
    from facecast.models.render.background import parse_background
    from facecast.models.render.engine import WarpEngine
    from facecast.outputs.mp4_writer import Mp4Writer

    with tempfile.TemporaryDirectory() as tmp:
        store = AvatarStore(Path(tmp) / "avatars")
        avatar = store.add(args.avatar.read_bytes(), size=args.size) if args.avatar else store.default()
        speech = args.audio or Path(str(resources.files("facecast.assets").joinpath("demo_speech.wav")))
        audio = decode_audio(speech)
        n_clip = int(args.clip_seconds * AUDIO_RATE_HZ)
        audio = np.tile(audio, n_clip // len(audio) + 1)[:n_clip]

        cv2.setNumThreads(1)
        background = parse_background(args.background)
        head = WarpEngine(avatar, size=args.size, background=background)
        stages = {"driver": 0.0, "composer": 0.0, "solve": 0.0, "dense_map": 0.0, "remap": 0.0, "lids_mouth": 0.0,
                  "background": 0.0, "h264_encode": 0.0}  # fmt: skip
        frames = 0
        writer = Mp4Writer(Path(tmp) / "enc.mp4", fps=30, size=args.size)
        r = head.renderer
        for start in range(0, len(audio), CHUNK_SAMPLES):
            t0 = time.perf_counter()
            motions = head.driver.push(audio[start : start + CHUNK_SAMPLES])  # the driver alone
            stages["driver"] += time.perf_counter() - t0
            for m in motions:
                t = [time.perf_counter()]
                m = head.composer.compose(m)
                t.append(time.perf_counter())
                solved = r.solve(m)
                t.append(time.perf_counter())
                source_map = r.backward_map(solved.disp)
                t.append(time.perf_counter())
                out = r.warp(source_map)
                t.append(time.perf_counter())
                r.paint(out, solved, source_map)
                t.append(time.perf_counter())
                out, _ = r.composite(out, source_map)
                t.append(time.perf_counter())
                writer.write_video(m.index, out)
                t.append(time.perf_counter())
                for name, a, b in zip(list(stages)[1:], t[:-1], t[1:], strict=True):
                    stages[name] += b - a
                frames += 1
            if frames >= args.frames:
                break
        writer.close()
        ms = {k: 1000 * v / frames for k, v in stages.items()}
        render_ms = sum(v for k, v in ms.items() if k != "h264_encode")
        cv2.setNumThreads(0)
        t0 = time.perf_counter()
        render_warp(avatar, audio, Path(tmp) / "clip.mp4", size=args.size, background=background)
        clip_s = time.perf_counter() - t0

    print(
        f"warp engine, {args.size}x{args.size}, background {args.background}, {frames} frames, one core (cv2 threads = 1):"
    )
    for name, value in ms.items():
        print(f"  {name:14s} {value:7.2f} ms/frame")
    print(
        f"  render total   {render_ms:7.2f} ms/frame = {1000 / render_ms:6.1f} fps (driver to lids and mouth, one core)"
    )
    print(f"  with encode    {render_ms + ms['h264_encode']:7.2f} ms/frame")
    print(
        f"{args.clip_seconds:.0f} s clip rendered to MP4 in {clip_s:.2f} s ({clip_s / args.clip_seconds:.3f} x real time)"
    )
    print(json.dumps({"size": args.size, "background": args.background, "frames": frames, "stage_ms": {k: round(v, 3) for k, v in ms.items()},
                      "render_ms_per_frame": round(render_ms, 3), "fps_one_core": round(1000 / render_ms, 1),
                      "clip_seconds": args.clip_seconds, "clip_render_s": round(clip_s, 3),
                      "clip_realtime_ratio": round(clip_s / args.clip_seconds, 4)}))  # fmt: skip
    return 0
