"""`facecast bench realism MEDIA_DIR`: does the warp engine's talking head look alive and plausible?

Renders every portrait x speech .wav of a folder as `bench matrix` does (render_warp, default warp
engine, head motion on), plus one idle render per portrait: silence, so that blinks per minute rest
on at least 60 s per portrait and the rest measures get long silent stretches (speech files have only
short pauses). Silence rather than speech strung together with pauses: it is the idle state a live
viewer sees between utterances, and it holds no speech to tell apart from the pauses.

Each render is measured only with an independent tracker (mediapipe face mesh on the decoded MP4
frames, mouth_track.MouthMeter), never with the engine's landmarks:
  blinks       eye aspect ratio per frame; a blink = EAR < 0.6 x the render's median (realism_measures)
  lip closure  median opening at P/B/M / at open vowels (bench visemes), files with a .phone.json
  cavity       mouth interior luma / cheek luma on the widest-open frames
  rest         in silence (< -45 dBFS, 0.3 s from speech): mouth opening, teeth showing on the lip line
  lip sync     bench lipsync: best lag and the correlation at lag 0
Lip sync and lip closure call measure_lipsync and measure_clip themselves (each tracks the video
again, ~5 ms a frame), so their figures are exactly those of `bench lipsync`/`visemes`/`matrix`.

Pooled per portrait: blinks per minute over all its video, closed ratios, cavity and rest over all
samples together; the viseme ratio pooled as `bench visemes` pools; the correlations (corr0 = at lag
0, best = at the best lag) are the worst render's. Idle renders have no lip sync (the audio is flat).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench import realism_measures as M

IDLE_MIN_S = 30.0
PORTRAIT_MIN_S = 60.0  # blinks per minute per portrait rest on at least this much video
# Targets (from the issue; rest and teeth: "close to 0", read as at most 0.02).
TARGETS: dict[str, Any] = {
    "blinks_per_min": [8, 30], "closed_ratio_max": 0.35, "viseme_ratio": 0.35, "cavity": 0.6,
    "rest_opening": 0.02, "rest_teeth": 0.02, "corr_lag0": 0.7, "best_lag": 0,
}  # fmt: skip


@dataclass
class FrameTrack:
    """Per-frame figures of one decoded render (nan where no face was found)."""

    pts_s: np.ndarray
    fps: float
    opening: np.ndarray
    ear: np.ndarray
    cavity: np.ndarray
    teeth: np.ndarray
    rms_db: np.ndarray

    @property
    def duration_s(self) -> float:
        return self.opening.shape[0] / self.fps


def _face_roi(rgb: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face's bounding box (10 % margin) and landmarks in it: the pixel measures cost a tenth."""
    h, w = rgb.shape[:2]
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    pad = 0.1 * (hi - lo)
    x0, y0 = (max(0, int(v)) for v in lo - pad)
    x1, y1 = min(w, int(hi[0] + pad[0]) + 1), min(h, int(hi[1] + pad[1]) + 1)
    return rgb[y0:y1, x0:x1], lm - np.array([x0, y0], np.float64)


def track_frames(video: Path) -> FrameTrack:
    """Decode a render, track each frame, and take every per-frame measure (one tracking pass)."""
    from facecast.bench.mouth_track import MediaInputError, MouthMeter, mouth_opening, nominal_fps, open_media
    from facecast.bench.speech_envelope import decode_audio, rms_per_frame

    rows: list[tuple[float, float, float, float, float]] = []
    container = open_media(video)
    with container, MouthMeter() as meter:
        if not container.streams.video:
            raise MediaInputError(f"{video} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else None
        for index, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else index / (rate or 25.0)
            rgb = frame.to_ndarray(format="rgb24")
            lm = meter.landmarks(rgb)
            if lm is None:
                rows.append((t, math.nan, math.nan, math.nan, math.nan))
                continue
            roi, roi_lm = _face_roi(rgb, lm)
            rows.append((t, mouth_opening(lm), M.eye_aspect_ratio(lm), M.cavity_ratio(roi, roi_lm),
                         M.teeth_fraction(roi, roi_lm)))  # fmt: skip
    if not rows:
        raise MediaInputError(f"{video} has no decodable video frame")
    table = np.array(sorted(rows), np.float64)
    pts = table[:, 0]
    fps = nominal_fps(pts, rate)
    try:
        rms = rms_per_frame(decode_audio(video), pts, 1.0 / fps)
    except MediaInputError:  # no audio track: nothing is known to be silent
        rms = np.full(pts.shape, np.nan)
    return FrameTrack(pts, fps, table[:, 1], table[:, 2], table[:, 3], table[:, 4], M.rms_dbfs(rms))


@dataclass
class RenderFigures:
    portrait: str
    speech: str  # file name, or "idle <N> s"
    duration_s: float
    face_ratio: float
    blinks: list[M.Blink]
    # lowest EAR / open level of the render: how far the lids get even when no blink crosses 0.6
    ear_min_ratio: float
    cavity_samples: np.ndarray  # cavity ratios of the widest-open frames
    rest_opening: np.ndarray  # openings of the silent frames
    rest_teeth: np.ndarray  # teeth fractions of the silent frames
    lipsync: Any = None  # LipsyncResult (speech renders)
    visemes: Any = None  # VisemeClip (speech with an alignment)
    summary: dict[str, Any] = field(default_factory=dict)  # summarise([self])

    def to_json(self) -> dict[str, Any]:
        """The summary, plus each blink and the lip-sync and viseme details behind it."""
        out: dict[str, Any] = {"portrait": self.portrait, "speech": self.speech, **self.summary}
        out["blink_list"] = [[b.start, b.end, round(b.closed_ratio, 4)] for b in self.blinks]
        if self.lipsync is not None:
            out["corr_by_lag"] = self.lipsync.to_json()["corr_by_lag"]
        if self.visemes is not None:
            v = self.visemes
            out["visemes"] = {
                "n_bilabial": int(v.bilabial.size), "n_open": int(v.open_vowel.size),
                "median_bilabial": _num(v.median_bilabial), "median_open": _num(v.median_open),
            }  # fmt: skip
        return out


def measure_track(track: FrameTrack, portrait: str, speech: str) -> RenderFigures:
    """The tracker-only figures of one render (blinks, cavity, rest)."""
    silent = M.silent_frames(track.rms_db, track.fps)
    _, cavity = M.cavity_darkness(track.cavity, track.opening)
    return RenderFigures(
        portrait=portrait,
        speech=speech,
        duration_s=track.duration_s,
        face_ratio=float(np.mean(np.isfinite(track.opening))),
        blinks=M.find_blinks(track.ear),
        ear_min_ratio=M.finite_min(track.ear) / M.open_eye_level(track.ear),
        cavity_samples=cavity,
        rest_opening=track.opening[silent & np.isfinite(track.opening)],
        rest_teeth=track.teeth[silent & np.isfinite(track.teeth)],
    )


def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def summarise(renders: list[RenderFigures]) -> dict[str, Any]:
    """The figures of one render, or of a portrait's renders pooled (samples together, not averages)."""
    from facecast.bench.visemes import pooled_ratio

    duration = sum(r.duration_s for r in renders)
    blinks = [b for r in renders for b in r.blinks]
    closed = np.array([b.closed_ratio for b in blinks])
    speech = [r.lipsync for r in renders if r.lipsync is not None]
    corr0 = np.array([r.corr_by_lag.get(0, math.nan) for r in speech], np.float64)
    clips = [r.visemes for r in renders if r.visemes is not None]
    out = {
        "duration_s": round(duration, 2),
        "face_ratio": _num(min(r.face_ratio for r in renders)),
        "blinks": len(blinks),
        "blinks_per_min": _num(60.0 * len(blinks) / duration if duration > 0 else math.nan, 2),
        "closed_ratio_median": _num(M.finite_median(closed)),
        "closed_ratio_max": _num(float(closed.max()) if closed.size else math.nan),
        "ear_min_ratio": _num(M.finite_min(np.array([r.ear_min_ratio for r in renders]))),
        "viseme_ratio": _num(pooled_ratio(clips)) if clips else None,
        "cavity": _num(M.finite_median(np.concatenate([r.cavity_samples for r in renders]))),
        "cavity_frames": int(sum(r.cavity_samples.size for r in renders)),
        "rest_opening": _num(M.finite_median(np.concatenate([r.rest_opening for r in renders]))),
        "rest_teeth": _num(M.finite_mean(np.concatenate([r.rest_teeth for r in renders]))),
        "rest_frames": int(sum(r.rest_opening.size for r in renders)),
        "corr_lag0": _num(M.finite_min(corr0)),
        "best_corr": _num(M.finite_min(np.array([r.best_corr for r in speech], np.float64))),
        "best_lags": [r.best_lag for r in speech],
    }
    if len(renders) > 1:
        out["corr_lag0_median"] = _num(M.finite_median(corr0))
    out["misses"] = misses(out)
    return out


def misses(fig: dict[str, Any]) -> list[str]:
    """Names of the targets a summary misses (a figure that could not be measured is not a miss)."""
    t, out = TARGETS, []

    def over(key: str, limit: float) -> None:
        if fig.get(key) is not None and fig[key] > limit:
            out.append(key)

    bpm = fig.get("blinks_per_min")
    # a rate over a few seconds is chance (one blink in 3 s reads 20/min): judged over a minute or more
    if (
        bpm is not None
        and fig["duration_s"] >= PORTRAIT_MIN_S
        and not t["blinks_per_min"][0] <= bpm <= t["blinks_per_min"][1]
    ):
        out.append("blinks_per_min")
    for key in ("closed_ratio_max", "viseme_ratio", "cavity", "rest_opening", "rest_teeth"):
        over(key, t[key])
    if fig.get("corr_lag0") is not None and fig["corr_lag0"] < t["corr_lag0"]:
        out.append("corr_lag0")
    if any(lag is not None and lag != t["best_lag"] for lag in fig.get("best_lags", [])):
        out.append("best_lag")
    return out


COLUMNS = [  # (title, key, width, format)
    ("dur s", "duration_s", 6, ".1f"), ("face", "face_ratio", 5, ".2f"), ("blinks", "blinks", 6, "d"),
    ("/min", "blinks_per_min", 5, ".1f"), ("cl.med", "closed_ratio_median", 6, ".2f"),
    ("cl.max", "closed_ratio_max", 6, ".2f"), ("earmin", "ear_min_ratio", 6, ".2f"),
    ("PBM", "viseme_ratio", 5, ".2f"),
    ("cavity", "cavity", 6, ".2f"),
    ("n", "cavity_frames", 4, "d"), ("rest", "rest_opening", 6, ".3f"), ("teeth", "rest_teeth", 6, ".3f"),
    ("n", "rest_frames", 4, "d"), ("corr0", "corr_lag0", 6, ".3f"), ("best", "best_corr", 6, ".3f"),
]  # fmt: skip


def table_row(name: str, fig: dict[str, Any]) -> str:
    cells = []
    for _, key, width, fmt in COLUMNS:
        value = fig.get(key)
        cells.append(f"{value:{width}{fmt}}" if value is not None else f"{'-':>{width}}")
    lags = ",".join(str(lag) for lag in fig["best_lags"]) or "-"
    miss = ("  MISS " + ",".join(fig["misses"])) if fig["misses"] else ""
    return f"{name[:44]:44s} " + " ".join(cells) + f"  lag {lags}{miss}"


def table_header() -> str:
    return f"{'render':44s} " + " ".join(f"{t:>{w}}" for t, _, w, _ in COLUMNS) + "  best lags"


def render_figures(video: Path, portrait: str, speech: Path | None, label: str) -> RenderFigures:
    """Track and measure one render; speech renders also get bench lipsync and, with an alignment,
    bench visemes."""
    from facecast.bench.lipsync import measure_lipsync
    from facecast.bench.visemes import measure_clip

    figures = measure_track(track_frames(video), portrait, label)
    if speech is not None:
        figures.lipsync = measure_lipsync(video)
        alignment = speech.with_suffix(".phone.json")
        if alignment.is_file():
            figures.visemes = measure_clip(video, alignment)
    return figures


def run_bench(media: Path, out_dir: Path, fps: int, store: Any, report: Any = print) -> dict[str, Any]:
    """Render and measure every portrait x speech file (and an idle render each) into out_dir, avatars
    from `store`; returns the JSON document."""
    from facecast.bench.media_matrix import PORTRAIT_SUFFIXES
    from facecast.cli.errors import CliError
    from facecast.cli.render import render_warp
    from facecast.frames import AUDIO_RATE_HZ
    from facecast.models.audio.decode import decode_audio

    portraits = sorted(p for p in media.iterdir() if p.suffix.lower() in PORTRAIT_SUFFIXES)
    speeches = sorted(media.glob("*.wav"))
    if not portraits or not speeches:
        raise CliError(f"{media} needs portrait images and .wav speech files")
    audios = {s: decode_audio(s) for s in speeches}
    speech_s = sum(len(a) for a in audios.values()) / AUDIO_RATE_HZ
    idle_s = max(IDLE_MIN_S, PORTRAIT_MIN_S - speech_s)
    started = time.monotonic()
    renders: list[RenderFigures] = []
    portraits_out: dict[str, Any] = {}
    report(table_header())
    for portrait in portraits:
        avatar = store.add(portrait.read_bytes(), name=portrait.name)
        jobs: list[tuple[str, np.ndarray, Path | None]] = [(s.stem, a, s) for s, a in audios.items()]
        jobs.append((f"idle{idle_s:.0f}s", np.zeros(int(idle_s * AUDIO_RATE_HZ), np.float32), None))
        mine = []
        for stem, audio, speech in jobs:
            video = out_dir / f"{portrait.stem}__{stem}.mp4"
            render_warp(avatar, audio, video, fps=fps)
            label = speech.name if speech else f"idle {idle_s:.0f} s"
            figures = render_figures(video, portrait.name, speech, label)
            figures.summary = summarise([figures])
            mine.append(figures)
            report(table_row(f"{portrait.stem} / {label}", figures.summary))
        portraits_out[portrait.name] = summarise(mine)
        report(table_row(f"{portrait.name} POOLED", portraits_out[portrait.name]))
        renders.extend(mine)
    elapsed = time.monotonic() - started
    report(f"{len(renders)} renders in {elapsed:.0f} s; targets: {json.dumps(TARGETS)}")
    return {
        "targets": TARGETS,
        "fps": fps,
        "idle_s": idle_s,
        "elapsed_s": round(elapsed, 1),
        "renders": [r.to_json() for r in renders],
        "portraits": portraits_out,
    }


def _run(args: argparse.Namespace) -> int:
    from facecast.bench.mouth_track import MediaInputError
    from facecast.cli.errors import CliError
    from facecast.models.avatar import AvatarStore

    if not args.media.is_dir():
        raise CliError(f"{args.media} is not a folder")
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            store = AvatarStore(Path(tmp) / "avatars")
            result = run_bench(args.media, out_dir, args.fps, store, lambda line: print(line, flush=True))
        except MediaInputError as exc:
            raise CliError(str(exc)) from exc
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "realism",
        help="render all portraits x speech files (+ idle): blinks, lip closure, mouth cavity, rest, sync",
        description="Measures each warp render with an independent face tracker only: blinks per minute and "
        "how far the lids close, lip closure at P/B/M, darkness inside the open mouth, the mouth and teeth "
        "at rest in silence, and lip sync; per render and pooled per portrait.",
    )
    parser.add_argument("media", type=Path, help="folder with portrait images and speech .wav files")
    parser.add_argument("--out", type=Path, help="keep the renders here (default: a temporary folder)")
    parser.add_argument("--fps", type=int, choices=[25, 30], default=30)
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.set_defaults(func=_run)
