"""What `facecast bench av_playout` makes of a run: per-burst offsets and latencies, getStats figures,
the targets, the table. Pure functions of a Capture (what one page recorded); the face tracker
(mediapipe, via facecast.bench.mouth_track) measures the captured frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bench.av_playout_browser import RMS_BLOCK_MS, Recording, decode_jpeg
from facecast.bench.av_playout_signal import (
    PERIOD_S,
    AudioBlocks,
    detect_audio_onsets,
    match_onsets,
    median,
    spread,
    video_onsets,
)

FPS = 30
# Chrome's A/V sync has settled once neither target delay moved more than this over this many seconds
# (longer than most gaps between two of its moves).
SETTLED_FOR_S = 12
SETTLED_DELAY_MS = 4.0
END_WINDOW_S = 6.0  # "at the end" figures use the last this many seconds
TIMEBASE_TOLERANCE_S = 0.05  # AudioData.timestamp counts as performance.now() time if this close

# What the team compares against (reported, never enforced).
TARGETS = {
    "concealment_pct": ("<=", 1.0),
    "jitter_buffer_ms": ("<=", 60.0),
    "lipsync_vs_reference_ms": ("abs<=", 20.0),
    "offset_spread_ms": ("<=", 40.0),
    "displayed_fps": (">=", 28.0),
}


@dataclass
class Capture:
    """One target's raw run: what the page recorded, getStats snapshots, and when onsets were sent."""

    name: str
    recording: Recording
    stats: list[dict[str, Any]]
    clock_offset_s: float  # time.time() - page performance.now() seconds
    onset_sent_s: np.ndarray  # time.time() per burst onset
    onsets_s: np.ndarray
    page_errors: list[str] = field(default_factory=list)
    warmup_s: float = 0.0  # connected → recording
    sync_settled: bool = False  # Chrome's A/V sync estimate had settled when recording began
    server_send: dict[str, Any] | None = None  # facecast only: the server's own send lateness figures


def target_delays_ms(before: dict[str, Any], after: dict[str, Any]) -> tuple[float, float]:
    """(audio, video) jitter buffer target delay between two snapshots (ms; nan without samples)."""
    out = []
    for kind in ("audio", "video"):
        emitted = delta([before, after], kind, "jitterBufferEmittedCount")
        out.append(1000 * ratio(delta([before, after], kind, "jitterBufferTargetDelay"), emitted))
    return out[0], out[1]


def sync_settled(delays_ms: list[tuple[float, float]]) -> bool:
    """Neither target delay moved over the last SETTLED_FOR_S readings (one a second)."""
    last = np.array(delays_ms[-SETTLED_FOR_S:], np.float64)
    if last.shape[0] < SETTLED_FOR_S or not np.all(np.isfinite(last)):
        return False
    return bool(np.all(last.max(axis=0) - last.min(axis=0) <= SETTLED_DELAY_MS))


def chrome_skew_ms(snapshot: dict[str, Any]) -> float | None:
    """Chrome's own estimate of video minus audio playout (sender clock, ms), None before reports."""
    video = (snapshot.get("video") or {}).get("estimatedPlayoutTimestamp") or 0
    audio = (snapshot.get("audio") or {}).get("estimatedPlayoutTimestamp") or 0
    return float(video - audio) if video and audio else None


def keep_capture(cap: Capture, folder: Path) -> None:
    """A capture on disk: frames/NNNNN.jpg, and capture.json (display times, audio chunks, stats, sends)."""
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    frames = cap.recording.ordered_frames()
    for i, (_, _, jpeg) in enumerate(frames):
        (folder / "frames" / f"{i:05d}.jpg").write_bytes(jpeg)
    record = {
        "display_ms": [t for t, _, _ in frames],
        "presented": [n for _, n, _ in frames],
        "audio_chunks": cap.recording.chunks,
        "stats": cap.stats,
        "clock_offset_s": cap.clock_offset_s,
        "onset_sent_s": [None if not math.isfinite(v) else v for v in cap.onset_sent_s.tolist()],
        "onsets_s": cap.onsets_s.tolist(),
        "page_errors": cap.page_errors,
    }
    (folder / "capture.json").write_text(json.dumps(record))


# ---------------------------------------------------------------------------------------- analysis


def delta(stats: list[dict[str, Any]], section: str, key: str, first: int = 0, last: int = -1) -> float:
    a, b = stats[first].get(section) or {}, stats[last].get(section) or {}
    return float(b.get(key, 0.0)) - float(a.get(key, 0.0))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def end_window_start(stats: list[dict[str, Any]]) -> int:
    """Index of the snapshot that starts the last END_WINDOW_S seconds."""
    end = float(stats[-1]["now"])
    for i, snap in enumerate(stats):
        if end - float(snap["now"]) <= END_WINDOW_S * 1000:
            return max(0, min(i, len(stats) - 2))
    return 0


def playout_delay_s(stats: list[dict[str, Any]]) -> float:
    """Mean playout delay of the element's audio over the run (media-playout stats; 0 without them)."""
    value = ratio(delta(stats, "playout", "totalPlayoutDelay"), delta(stats, "playout", "totalSamplesCount"))
    return value if math.isfinite(value) else 0.0


def audio_blocks(chunks: list[dict[str, Any]], delay_s: float) -> tuple[AudioBlocks, str]:
    """Playout time of every RMS block, and which clock the chunk times came from.

    Chromium stamps remote AudioData with the moment the playout path pulled it, on the
    performance.now() clock; that is immune to the page's main thread being late to read. Should a
    browser use another timebase, the read time stands in (a little later, jittery).
    """
    if not chunks:
        return AudioBlocks(np.zeros(0), np.zeros(0)), "none"
    read_s = np.array([c["now"] for c in chunks], np.float64) / 1000.0
    stamp_s = np.array([c["timestamp"] for c in chunks], np.float64) / 1e6
    use_stamp = abs(float(np.median(read_s - stamp_s))) < TIMEBASE_TOLERANCE_S
    starts = stamp_s if use_stamp else read_s
    times, levels = [], []
    for start, chunk in zip(starts, chunks, strict=True):
        block_s = max(1, round(chunk["rate"] * RMS_BLOCK_MS / 1000.0)) / float(chunk["rate"])
        rms = np.asarray(chunk["rms"], np.float64)
        times.append(start + delay_s + np.arange(rms.size) * block_s)
        levels.append(rms)
    order = np.argsort(np.concatenate(times), kind="stable")
    blocks = AudioBlocks(np.concatenate(times)[order], np.concatenate(levels)[order])
    return blocks, "AudioData.timestamp" if use_stamp else "read time"


def mouth_openings(recording: Recording) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(display times in page seconds, presentedFrames, mouth opening) per displayed frame, in order."""
    from facecast.bench.mouth_track import track_mouth_frames

    frames = recording.ordered_frames()
    times = np.array([t for t, _, _ in frames], np.float64) / 1000.0
    presented = np.array([n for _, n, _ in frames], np.int64)
    track = track_mouth_frames((decode_jpeg(jpeg) for _, _, jpeg in frames), times, FPS)
    return times, presented, track.opening


def _ms(value: float) -> float | None:
    return round(value * 1000.0, 1) if math.isfinite(value) else None


def _num(value: float, digits: int = 2) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def analyse(cap: Capture, long_mode: bool) -> dict[str, Any]:
    """Every figure of one target's run (times in ms unless named otherwise)."""
    stats = cap.stats
    delay = playout_delay_s(stats)
    blocks, audio_clock = audio_blocks(cap.recording.chunks, delay)
    sent_page_s = cap.onset_sent_s - cap.clock_offset_s
    audio_on = match_onsets(detect_audio_onsets(blocks), sent_page_s)
    display_s, presented, opening = mouth_openings(cap.recording)
    video_on, skipped = video_onsets(display_s, presented, opening, audio_on, PERIOD_S)
    offsets = video_on - audio_on
    latency = audio_on - sent_page_s
    seconds = (float(stats[-1]["now"]) - float(stats[0]["now"])) / 1000.0
    end = end_window_start(stats)
    span_s = (display_s[-1] - display_s[0]) if display_s.size > 1 else float("nan")
    result: dict[str, Any] = {
        "bursts": int(cap.onsets_s.size),
        "bursts_measured": int(np.count_nonzero(np.isfinite(offsets))),
        "audio_onsets_found": int(np.count_nonzero(np.isfinite(audio_on))),
        "bursts_left_out_missed_frame": skipped,
        "offsets_ms": [_ms(v) for v in offsets],
        "offset_median_ms": _ms(median(offsets)),
        "offset_spread_ms": _ms(spread(offsets)),
        "concealment_pct": _num(
            100
            * ratio(delta(stats, "audio", "concealedSamples"), delta(stats, "audio", "totalSamplesReceived"))
        ),
        "jitter_buffer_ms": _ms(
            ratio(
                delta(stats, "audio", "jitterBufferDelay"), delta(stats, "audio", "jitterBufferEmittedCount")
            )
        ),
        "jitter_buffer_end_ms": _ms(
            ratio(
                delta(stats, "audio", "jitterBufferDelay", end),
                delta(stats, "audio", "jitterBufferEmittedCount", end),
            )
        ),
        "playout_delay_ms": _ms(delay),
        "audio_latency_ms": [_ms(v) for v in latency],
        "video_latency_ms": [_ms(v) for v in video_on - sent_page_s],
        "audio_latency_median_ms": _ms(median(latency)),
        "audio_latency_spread_ms": _ms(spread(latency)),
        "displayed_fps": _num(ratio(float(stats[-1]["rvfc"] - stats[0]["rvfc"]), seconds), 1),
        "element_fps": _num(ratio(delta(stats, "quality", "total"), seconds), 1),
        "presented_fps": _num(ratio(float(presented[-1] - presented[0]), span_s), 1)
        if presented.size
        else None,
        "decoded_fps": _num(ratio(delta(stats, "video", "framesDecoded"), seconds), 1),
        "frames_dropped": int(delta(stats, "video", "framesDropped")),
        "element_frames_dropped": int(delta(stats, "quality", "dropped")),
        "frames_captured": len(cap.recording.frames),
        "face_found_pct": _num(100 * float(np.mean(np.isfinite(opening))) if opening.size else 0.0, 1),
        "video_size": [stats[-1].get("video", {}).get("width"), stats[-1].get("video", {}).get("height")],
        "audio_clock": audio_clock,
        "warmup_s": _num(cap.warmup_s, 1),
        "chrome_sync_settled": cap.sync_settled,
        "target_delay_ms": _target_delays_start_end(stats),
        "chrome_skew_median_ms": _num(
            median(np.array([v for v in map(chrome_skew_ms, stats) if v is not None])), 1
        ),
        "seconds": _num(seconds, 1),
    }
    if cap.page_errors:
        result["page_errors"] = cap.page_errors
    if long_mode:
        result.update(first_last_minute(audio_on, offsets, latency))
    return result


def _target_delays_start_end(stats: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Chrome's jitter buffer target delays (audio, video) in the first and the last interval: a move
    of the video one during the run is Chrome's A/V sync still adjusting."""
    first, last = target_delays_ms(stats[0], stats[1]), target_delays_ms(stats[-2], stats[-1])
    return {kind: [_num(first[i], 1), _num(last[i], 1)] for i, kind in enumerate(("audio", "video"))}


def first_last_minute(audio_on: np.ndarray, offsets: np.ndarray, latency: np.ndarray) -> dict[str, Any]:
    """Offsets and latencies of the bursts heard in the first minute and in the last minute."""
    heard = audio_on[np.isfinite(audio_on)]
    if not heard.size:
        return {}
    first = np.isfinite(audio_on) & (audio_on < heard[0] + 60.0)
    last = np.isfinite(audio_on) & (audio_on > heard[-1] - 60.0)
    return {
        "first_minute_offset_median_ms": _ms(median(offsets[first])),
        "last_minute_offset_median_ms": _ms(median(offsets[last])),
        "first_minute_latency_median_ms": _ms(median(latency[first])),
        "last_minute_latency_median_ms": _ms(median(latency[last])),
    }


def verdicts(facecast: dict[str, Any], lipsync_vs_reference_ms: float | None) -> dict[str, Any]:
    """Each team target with facecast's figure and whether it is met (None: not measured)."""
    values = {
        "concealment_pct": facecast.get("concealment_pct"),
        "jitter_buffer_ms": facecast.get("jitter_buffer_ms"),
        "lipsync_vs_reference_ms": lipsync_vs_reference_ms,
        "offset_spread_ms": facecast.get("offset_spread_ms"),
        "displayed_fps": facecast.get("displayed_fps"),
    }
    out: dict[str, Any] = {}
    for name, (op, bound) in TARGETS.items():
        value = values[name]
        met = None
        if value is not None:
            met = {"<=": value <= bound, ">=": value >= bound, "abs<=": abs(value) <= bound}[op]
        out[name] = {"value": value, "target": f"{op} {bound:g}".replace("abs<=", "within ±"), "met": met}
    return out


# ------------------------------------------------------------------------------------------ report

ROWS = [
    ("lip sync offset, median (video - audio)", "offset_median_ms", "ms"),
    ("offset spread (max - min over bursts)", "offset_spread_ms", "ms"),
    ("bursts measured", "bursts_measured", ""),
    ("audio concealment", "concealment_pct", "%"),
    ("audio jitter buffer, over the run", "jitter_buffer_ms", "ms"),
    ("audio jitter buffer, last 6 s", "jitter_buffer_end_ms", "ms"),
    ("audio playout delay (media-playout)", "playout_delay_ms", "ms"),
    ("audio latency send → playout, median", "audio_latency_median_ms", "ms"),
    ("audio latency spread over the bursts", "audio_latency_spread_ms", "ms"),
    ("displayed fps (rVFC callbacks)", "displayed_fps", ""),
    ("presented fps (rVFC presentedFrames)", "presented_fps", ""),
    ("element fps (getVideoPlaybackQuality)", "element_fps", ""),
    ("decoded fps", "decoded_fps", ""),
    ("framesDropped (inbound-rtp)", "frames_dropped", ""),
    ("frames dropped by the element", "element_frames_dropped", ""),
    ("face found in captured frames", "face_found_pct", "%"),
    ("Chrome's own skew estimate (video - audio)", "chrome_skew_median_ms", "ms"),
    ("warm-up before recording", "warmup_s", "s"),
    ("first minute offset, median", "first_minute_offset_median_ms", "ms"),
    ("last minute offset, median", "last_minute_offset_median_ms", "ms"),
]


def print_table(result: dict[str, Any]) -> None:
    fc, ref = result["facecast"], result.get("reference")
    print(f"\nlip sync at playout, headless Chromium, {fc['bursts']} vowel bursts")
    print(f"{'':42s} {'facecast':>12s} {'reference':>12s}")
    for label, key, unit in ROWS:
        if key not in fc:
            continue
        cells = [_cell(part.get(key) if part else None, unit) for part in (fc, ref)]
        print(f"{label:42s} {cells[0]:>12s} {cells[1]:>12s}")
    for name, row in result["targets"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"target {name}: {row['value']} ({row['target']}): {met}")
    if fc.get("server_send_late_ms"):
        print(f"server's own send lateness past its schedule, last ~30 s (ms): {fc['server_send_late_ms']}")
    if "first_minute_offset_median_ms" in fc:
        print(
            f"offset median, first minute {fc['first_minute_offset_median_ms']} ms, "
            f"last minute {fc['last_minute_offset_median_ms']} ms; audio latency first minute "
            f"{fc['first_minute_latency_median_ms']} ms, last minute {fc['last_minute_latency_median_ms']} ms"
        )
    print(f"facecast offsets (ms): {fc['offsets_ms']}")
    if ref:
        print(f"reference offsets (ms): {ref['offsets_ms']}")


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:g} {unit}".strip() if isinstance(value, int | float) else str(value)
