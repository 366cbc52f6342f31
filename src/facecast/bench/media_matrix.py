"""`facecast bench matrix`: render every portrait x speech file of a folder and measure each render.

Per render: lip sync (best lag, correlation, face ratio) with the independent `bench lipsync` measure;
per portrait: the viseme ratio pooled over the speech files that come with a .phone.json alignment;
and, with head motion off, how much the background (outside the enlarged head and below-chin area)
changes on average, in grey levels.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PORTRAIT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "matrix", help="render all portraits x speech files in a folder; lip sync, visemes, background"
    )
    parser.add_argument("media", type=Path, help="folder with portrait images and speech .wav files")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--out", type=Path, help="keep the renders here (default: a temporary folder)")
    parser.set_defaults(func=_run)


def background_change(avatar: Any, audio: np.ndarray, fps: int) -> float:
    """Mean absolute grey-level change outside the head and shoulders over a render without head motion."""
    import cv2

    from facecast.frames import clip_block, frames_covering
    from facecast.models.face import topology as T
    from facecast.models.render.engine import WarpEngine

    head = WarpEngine(avatar, fps=fps, head_motion=False)
    lm = head.renderer.landmarks
    oval = lm[T.FACE_OVAL]
    c = oval.mean(0)
    mask = np.zeros((head.size, head.size), np.uint8)
    cv2.fillPoly(mask, [np.round(c + 1.6 * (oval - c)).astype(np.int32)], (1,))
    mask[int(lm[152, 1]) :, :] = 1  # neck and shoulders
    background = mask == 0
    ref = cv2.cvtColor(head.renderer.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    diffs = []
    for k in range(frames_covering(len(audio), fps)):
        head.push_audio(clip_block(audio, k, fps))
        for frame in head.pop_frames():
            assert frame.image is not None
            grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
            diffs.append(float(np.abs(grey - ref)[background].mean()))
    return float(np.mean(diffs))


def _run(args: argparse.Namespace) -> int:
    from facecast.bench.lipsync import measure_lipsync
    from facecast.bench.visemes import measure_clip, pooled_ratio
    from facecast.cli.errors import CliError
    from facecast.cli.render import render_warp
    from facecast.models.audio.decode import decode_audio
    from facecast.models.avatar import AvatarStore

    portraits = sorted(p for p in args.media.iterdir() if p.suffix.lower() in PORTRAIT_SUFFIXES)
    speeches = sorted(args.media.glob("*.wav"))
    if not portraits or not speeches:
        raise CliError(f"{args.media} needs portrait images and .wav speech files")
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        store = AvatarStore(Path(tmp) / "avatars")
        rows: list[dict[str, Any]] = []
        visemes: dict[str, Any] = {}
        for portrait in portraits:
            avatar = store.add(portrait.read_bytes(), name=portrait.name)
            clips = []
            for speech in speeches:
                audio = decode_audio(speech)
                video = out_dir / f"{portrait.stem}__{speech.stem}.mp4"
                render_warp(avatar, audio, video, fps=args.fps)
                r = measure_lipsync(video)
                rows.append({"portrait": portrait.name, "speech": speech.name, "best_lag": r.best_lag,
                             "best_corr": r.best_corr, "face_ratio": r.face_ratio})  # fmt: skip
                print(f"{portrait.name:24s} {speech.name:28s} lag {r.best_lag!s:>3}  corr {r.best_corr:.3f}  "
                      f"face {r.face_ratio:.3f}", flush=True)  # fmt: skip
                alignment = speech.with_suffix(".phone.json")
                if alignment.is_file():
                    clips.append(measure_clip(video, alignment))
            if clips:
                visemes[portrait.name] = {"pooled_ratio": round(pooled_ratio(clips), 4),
                                          "clips": {Path(c.video).stem: round(c.ratio, 4) for c in clips}}  # fmt: skip
                print(f"{portrait.name:24s} visemes pooled ratio {pooled_ratio(clips):.3f}", flush=True)
        bg_audio = decode_audio(speeches[0])
        background = {
            p.name: round(background_change(store.add(p.read_bytes()), bg_audio, args.fps), 3)
            for p in portraits
        }
        for name, value in background.items():
            print(f"{name:24s} background change (head motion off) {value:.2f} grey levels")
    corr = [r["best_corr"] for r in rows if r["best_corr"] is not None]
    summary = {"renders": len(rows), "min_corr": min(corr) if corr else None,
               "max_abs_lag": max(abs(r["best_lag"]) for r in rows if r["best_lag"] is not None),
               "min_face_ratio": min(r["face_ratio"] for r in rows)}  # fmt: skip
    print(json.dumps({"summary": summary, "lipsync": rows, "visemes": visemes, "background": background}))
    return 0
