"""What `facecast bench soak` samples each second, and the per-minute rows and summary made from it.

A sample holds the server process's RSS, threads and open fds (from /proc) and, per session, what
GET /v1/sessions says: frames emitted, rendered and skipped (repeated images), state, and each viewer's
A/V send offset (`peers[].output.av_offset_s`: how much later video leaves than audio for the same
media instant). Viewer processes report their own decoded frames; a session's received count is the
sum over the viewers it has had (a killed viewer's count stays where it stopped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facecast.bench.soak_faults import Fault

# session index, monotonic time → video frames its viewers decoded by then
ReceivedAt = Callable[[int, float], float]


@dataclass
class Sample:
    t: float  # monotonic
    rss_mb: float
    threads: int
    fds: int
    sessions: dict[str, dict[str, Any]]  # session id → frames, rendered, skipped, state, offsets_ms


def proc_status(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, threads, open fds) of a live process."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, threads, len(os.listdir(f"/proc/{pid}/fd"))


def session_stats(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GET /v1/sessions → per session id: frames, rendered, skipped, state, A/V offsets in ms."""
    out = {}
    for s in listing["sessions"]:
        offsets = [
            p["output"]["av_offset_s"] * 1000
            for p in s.get("peers", [])
            if isinstance(p.get("output"), dict) and p["output"].get("av_offset_s") is not None
        ]
        out[s["id"]] = {
            "frames": s["frames"],
            "rendered": s["frames_rendered"],
            "skipped": s["frames_skipped"],
            "state": s["state"],
            "offsets_ms": offsets,
        }
    return out


def _at(samples: Sequence[Sample], t: float) -> Sample:
    """The last sample at or before t (the first one if none is)."""
    found = samples[0]
    for sample in samples:
        if sample.t > t:
            break
        found = sample
    return found


def _fps(a: Sample, b: Sample, sid: str, key: str) -> float:
    if b.t <= a.t or sid not in a.sessions or sid not in b.sessions:
        return 0.0
    return (b.sessions[sid][key] - a.sessions[sid][key]) / (b.t - a.t)


def window(
    samples: Sequence[Sample], t0: float, t1: float, sids: Sequence[str], received: ReceivedAt
) -> list[dict[str, Any]]:
    """Per session over [t0, t1]: fps emitted / rendered / received, repeated frames, end state, drift."""
    a, b = _at(samples, t0), _at(samples, t1)
    inside = [s for s in samples if t0 < s.t <= t1]
    rows = []
    for i, sid in enumerate(sids):
        first, last = a.sessions.get(sid, {}), b.sessions.get(sid, {})
        offsets = [o for s in inside for o in s.sessions.get(sid, {}).get("offsets_ms", [])]
        rows.append(
            {
                "session": i,
                "emitted_fps": round(_fps(a, b, sid, "frames"), 2),
                "rendered_fps": round(_fps(a, b, sid, "rendered"), 2),
                "received_fps": round((received(i, t1) - received(i, t0)) / max(t1 - t0, 1e-9), 2),
                "repeated": last.get("skipped", 0) - first.get("skipped", 0),
                "state": last.get("state", "gone"),
                # The brief's "drift": the largest A/V send offset seen; the mean shows a slow walk.
                "max_drift_ms": round(max(map(abs, offsets)), 2) if offsets else None,
                "mean_av_offset_ms": round(float(np.mean(offsets)), 2) if offsets else None,
            }
        )
    return rows


def row(
    minute: int, samples: Sequence[Sample], t0: float, t1: float, sids: Sequence[str], received: ReceivedAt
) -> dict[str, Any]:
    """One per-minute row: the server process at t1 (RSS also its max in the row) and every session."""
    per = window(samples, t0, t1, sids, received)
    end = _at(samples, t1)
    drifts = [p["max_drift_ms"] for p in per if p["max_drift_ms"] is not None]
    return {
        "minute": minute,
        "seconds": round(t1 - t0, 1),
        "rss_mb": round(end.rss_mb, 1),
        "rss_max_mb": round(max([s.rss_mb for s in samples if t0 < s.t <= t1] or [end.rss_mb]), 1),
        "threads": end.threads,
        "fds": end.fds,
        "sessions": per,
        "repeated": sum(p["repeated"] for p in per),
        "min_emitted_fps": min(p["emitted_fps"] for p in per),
        "min_rendered_fps": min(p["rendered_fps"] for p in per),
        "min_received_fps": min(p["received_fps"] for p in per),
        "failed": sum(p["state"] == "failed" for p in per),
        "max_drift_ms": max(drifts) if drifts else None,
        "mean_av_offset_ms": _mean([p["mean_av_offset_ms"] for p in per]),
    }


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 2) if known else None


def row_line(r: dict[str, Any]) -> str:
    fps = " ".join(f"{p['emitted_fps']:.1f}/{p['rendered_fps']:.1f}" for p in r["sessions"])
    drift = "n/a" if r["max_drift_ms"] is None else f"{r['max_drift_ms']:.2f} ms"
    return (
        f"minute {r['minute']} ({r['seconds']:.0f} s): RSS {r['rss_mb']:.1f} MB, {r['threads']} threads, "
        f"{r['fds']} fds | fps emitted/rendered {fps} | repeated {r['repeated']} | "
        f"viewers received >= {r['min_received_fps']:.1f} fps | failed {r['failed']} | A/V drift <= {drift}"
    )


def rss_slope_mb_per_min(samples: Sequence[Sample]) -> float | None:
    """Least-squares RSS slope over the second half of the run (the first half holds the warm-up growth)."""
    half = [s for s in samples if s.t >= (samples[0].t + samples[-1].t) / 2]
    if len(half) < 3:
        return None
    t = np.array([s.t for s in half]) / 60.0
    return round(float(np.polyfit(t - t[0], [s.rss_mb for s in half], 1)[0]), 3)


def fault_report(
    fault: Fault, samples: Sequence[Sample], sids: Sequence[str], received: ReceivedAt, check_at: float
) -> dict[str, Any]:
    """Others' min fps over the fault's window; whether the faulted session(s) came back by check_at:
    state live, frames advancing and its viewer receiving over the last seconds before check_at."""
    report: dict[str, Any] = {
        "fault": fault.kind,
        "session": fault.session,
        "note": fault.note,
        "at_s": None,
        "recovered": None,
    }
    if fault.started is None:
        return report
    report["at_s"] = round(fault.started - samples[0].t, 1)
    per = window(samples, fault.started, fault.started + fault.window_s, sids, received)
    others = [p for p in per if p["session"] != fault.session]
    for key in ("emitted_fps", "rendered_fps", "received_fps"):
        report[f"others_min_{key}"] = min((p[key] for p in others), default=None)
    probe = min(5.0, max(2.0, (check_at - (fault.ended or fault.started)) / 2))
    after = window(samples, check_at - probe, check_at, sids, received)
    faulted = [p for p in after if fault.session is None or p["session"] == fault.session]
    report["recovered"] = all(
        p["state"] == "live" and p["emitted_fps"] > 0 and p["received_fps"] > 0 for p in faulted
    )
    report["checked_at_s"] = round(check_at - samples[0].t, 1)
    report["after"] = [
        {k: p[k] for k in ("session", "state", "emitted_fps", "received_fps")} for p in faulted
    ]
    return report


def summary(
    rows: Sequence[dict[str, Any]], samples: Sequence[Sample], frames_received: int
) -> dict[str, Any]:
    drifts = [r["max_drift_ms"] for r in rows if r["max_drift_ms"] is not None]
    means = [r["mean_av_offset_ms"] for r in rows if r["mean_av_offset_ms"] is not None]
    return {
        "rss_mb": {
            "first": round(samples[0].rss_mb, 1),
            "last": round(samples[-1].rss_mb, 1),
            "max": round(max(s.rss_mb for s in samples), 1),
            "slope_mb_per_min_second_half": rss_slope_mb_per_min(samples),
        },
        "max_threads": max(s.threads for s in samples),
        "fds": {"first": samples[0].fds, "last": samples[-1].fds, "growth": samples[-1].fds - samples[0].fds},
        "min_emitted_fps": min(r["min_emitted_fps"] for r in rows),
        "min_rendered_fps": min(r["min_rendered_fps"] for r in rows),
        "min_received_fps": min(r["min_received_fps"] for r in rows),
        "repeated_frames": sum(r["repeated"] for r in rows),
        # A session failed at any sample counts, even if it were to come back later.
        "failed_sessions": len(
            {sid for s in samples for sid, v in s.sessions.items() if v["state"] == "failed"}
        ),
        "failed_at_end": sum(v["state"] == "failed" for v in samples[-1].sessions.values()),
        "max_drift_ms": max(drifts) if drifts else None,
        # A/V offset averaged per row, first and last row: a walk between them is drift proper.
        "mean_av_offset_ms": {"first": means[0], "last": means[-1]} if means else None,
        "frames_received": frames_received,
    }
