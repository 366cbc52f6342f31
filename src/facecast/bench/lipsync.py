"""`facecast bench lipsync VIDEO`: how well, and how early or late, the lips follow the speech.

Mouth opening per frame (mediapipe face mesh, see mouth_track) against the speech RMS over each
frame's span [pts_k, pts_k + 1/fps), both on the container's presentation timeline. Pearson
correlation over lags: at lag L, opening[k + L] is paired with rms[k], so a positive lag means
the video lags the audio (the mouth moves L frames after the sound).
The last line printed is one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_LAG = 6
MIN_PAIRS = 8  # fewer paired frames than this give no meaningful correlation


@dataclass(frozen=True)
class LipsyncResult:
    path: str
    frames: int
    fps: float
    face_ratio: float
    best_lag: int | None  # frames, positive = video lags the audio; None when nothing correlates
    best_corr: float  # nan when no lag has a defined correlation
    corr_by_lag: dict[int, float]  # nan where undefined (constant signal, too few frames)
    audio_start_s: float
    video_start_s: float
    # 5th/95th percentile of the opening over frames with a face: a still mouth shows a tiny span,
    # and its correlation is then chance (nan when there is no face at all).
    opening_p5: float
    opening_p95: float

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else round(x, 4)

        return {
            "path": self.path,
            "best_lag": self.best_lag,
            "best_lag_ms": None if self.best_lag is None else round(1000.0 * self.best_lag / self.fps, 1),
            "best_corr": num(self.best_corr),
            "face_ratio": round(self.face_ratio, 4),
            "frames": self.frames,
            "fps": round(self.fps, 3),
            "audio_start_s": round(self.audio_start_s, 4),
            "video_start_s": round(self.video_start_s, 4),
            "opening_p5": num(self.opening_p5),
            "opening_p95": num(self.opening_p95),
            "corr_by_lag": {str(lag): num(c) for lag, c in self.corr_by_lag.items()},
        }


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of the finite pairs; nan with fewer than MIN_PAIRS or a constant side."""
    keep = np.isfinite(x) & np.isfinite(y)
    if int(keep.sum()) < MIN_PAIRS:
        return float("nan")
    x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if denom <= 1e-12:  # a constant side (e.g. an exactly still mouth): correlation undefined
        return float("nan")
    return float(np.dot(x, y)) / denom


def lag_correlations(opening: np.ndarray, rms: np.ndarray, max_lag: int) -> dict[int, float]:
    """{lag: corr(opening[k + lag], rms[k])} for lag in -max_lag..max_lag (positive = video late)."""
    n = min(opening.shape[0], rms.shape[0])
    out: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            out[lag] = pearson(opening[lag:n], rms[: n - lag])
        else:
            out[lag] = pearson(opening[: n + lag], rms[-lag:n])
    return out


def best_of(corr_by_lag: dict[int, float]) -> tuple[int | None, float]:
    """The lag with the highest correlation (ties: the smallest |lag|), or (None, nan)."""
    finite = [(c, -abs(lag), lag) for lag, c in corr_by_lag.items() if math.isfinite(c)]
    if not finite:
        return None, float("nan")
    corr, _, lag = max(finite)
    return lag, corr


def measure_lipsync(path: str | Path, max_lag: int = DEFAULT_MAX_LAG) -> LipsyncResult:
    """Track the mouth in a video, envelope its audio per frame, and correlate the two over lags."""
    from facecast.bench.mouth_track import track_mouth
    from facecast.bench.speech_envelope import decode_audio, rms_per_frame

    audio = decode_audio(path)  # first: a file without audio fails before the slow face tracking
    track = track_mouth(path)
    rms = rms_per_frame(audio, track.pts_s, 1.0 / track.fps)
    corr_by_lag = lag_correlations(track.opening, rms, max_lag)
    best_lag, best_corr = best_of(corr_by_lag)
    seen = track.opening[np.isfinite(track.opening)]
    p5, p95 = np.percentile(seen, [5, 95]) if seen.size else (float("nan"), float("nan"))
    return LipsyncResult(
        path=str(path),
        frames=track.frames,
        fps=track.fps,
        face_ratio=track.face_ratio,
        best_lag=best_lag,
        best_corr=best_corr,
        corr_by_lag=corr_by_lag,
        audio_start_s=audio.start_s,
        video_start_s=float(track.pts_s[0]),
        opening_p5=float(p5),
        opening_p95=float(p95),
    )


def format_report(result: LipsyncResult) -> str:
    lines = [
        f"lipsync  {result.path}",
        f"  {result.frames} frames at {result.fps:.2f} fps, face found in {100 * result.face_ratio:.1f}% "
        f"of frames; video starts at {result.video_start_s:.3f} s, audio at {result.audio_start_s:.3f} s",
        f"  mouth opening (inner lips / eye span) 5th-95th percentile: {result.opening_p5:.3f} - "
        f"{result.opening_p95:.3f}",
        "  lag (frames)   lag (ms)    corr",
    ]
    for lag, corr in result.corr_by_lag.items():
        mark = "  <- best" if lag == result.best_lag else ""
        shown = f"{corr:+.3f}" if math.isfinite(corr) else "   n/a"
        lines.append(f"  {lag:+12d}   {1000 * lag / result.fps:+8.0f}   {shown}{mark}")
    if result.best_lag is None:
        why = "no face found" if result.face_ratio == 0 else "mouth or audio constant"
        lines.append(f"best lag: none ({why}); positive lag = video lags the audio")
    else:
        lines.append(
            f"best lag {result.best_lag:+d} frames ({1000 * result.best_lag / result.fps:+.0f} ms; positive = "
            f"video lags the audio), correlation {result.best_corr:.3f}"
        )
    lines.append(json.dumps(result.to_json()))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from facecast.bench.mouth_track import MediaInputError
    from facecast.cli.errors import CliError

    if args.max_lag < 0:
        raise CliError("--max-lag must be 0 or more frames")
    try:
        result = measure_lipsync(args.video, max_lag=args.max_lag)
    except MediaInputError as exc:
        raise CliError(str(exc)) from exc
    print(format_report(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "lipsync",
        help="correlate mouth opening with the speech loudness of a video over frame lags",
        description="Runs mediapipe face mesh on every frame, takes the inner-lip opening normalised by "
        "the eye span, and correlates it with the speech RMS per frame (presentation timestamps of both "
        "streams) over lags -N..+N. Positive lag = the video lags the audio. Last line: JSON.",
    )
    parser.add_argument("video", type=Path, help="video file with a speech audio track (mp4, mkv, webm, ...)")
    parser.add_argument(
        "--max-lag", type=int, default=DEFAULT_MAX_LAG, help="largest lag tried, in frames (default: 6)"
    )
    parser.set_defaults(func=_run)
