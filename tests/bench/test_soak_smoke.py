"""`facecast bench soak`: a short real run (server, viewer process, speech over the WebSocket), and the
pieces it is made of (argument checks, the fault plan, UDP port discovery, rows and summary)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from facecast.__main__ import main
from facecast.bench import soak_faults, soak_stats

SUMMARY_KEYS = {
    "rss_mb",
    "max_threads",
    "fds",
    "min_emitted_fps",
    "min_rendered_fps",
    "min_received_fps",
    "repeated_frames",
    "failed_sessions",
    "max_drift_ms",
    "frames_received",
    "viewers",
    "faults",
}


def test_soak_one_session_short_run(capsys: pytest.CaptureFixture[str]) -> None:
    # ~20 s on a quiet 2-core machine: server start, viewer start, 15 s measured in 5 s rows.
    argv = ["bench", "soak", "--sessions", "1", "--minutes", "0.25", "--size", "256", "--row-seconds", "5"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert any(line.startswith("minute 1 ") for line in lines[:-1])
    summary = result["summary"]
    assert SUMMARY_KEYS <= set(summary)
    assert {"first", "last", "max", "slope_mb_per_min_second_half"} <= set(summary["rss_mb"])
    assert summary["failed_sessions"] == 0
    assert summary["frames_received"] > 0
    assert summary["faults"] == []
    assert len(result["rows"]) >= 2  # 15 s in rows of 5 s
    row = result["rows"][0]
    assert row["threads"] > 0 and row["fds"] > 0 and row["rss_mb"] > 0
    assert row["sessions"][0]["state"] == "live"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sessions", "0"], "--sessions must be at least 1"),
        (["--minutes", "0"], "--minutes must be above 0"),
        (["--minutes", "0.2", "--faults"], "--faults needs --minutes 0.5 or more"),
        (["--audio", "/nonexistent.wav"], "does not exist"),
    ],
)
def test_soak_refuses_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "soak", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_fault_plan_spreads_five_faults_after_warmup() -> None:
    faults = soak_faults.plan(30 * 60.0, sessions=4)
    assert [f.kind for f in faults] == ["nan", "engine", "stop", "kill", "udp"]
    times = [f.at_s for f in faults]
    assert times == sorted(times) and times[0] == 60.0 and times[-1] < 30 * 60.0 - 60.0
    assert [f.session for f in faults] == [0, 1, 2, 3, None]
    assert next(f for f in faults if f.kind == "stop").stop_s == 60.0
    short = soak_faults.plan(60.0, sessions=1)  # a one-minute run: everything scaled down, one session
    assert all(f.session in (0, None) for f in short)
    stop = next(f for f in short if f.kind == "stop")
    assert 0 < stop.stop_s < short[3].at_s - stop.at_s  # SIGCONT comes before the next fault


def test_server_udp_ports_finds_this_process_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert port in soak_faults.server_udp_ports(os.getpid())
    assert port not in soak_faults.server_udp_ports(os.getpid())


def _sample(
    t: float, frames: int, skipped: int, state: str = "live", rss: float = 100.0
) -> soak_stats.Sample:
    session = {"frames": frames, "rendered": frames - skipped, "skipped": skipped, "state": state}
    return soak_stats.Sample(t, rss, 10, 20, {"s0": session | {"offsets_ms": [1.0, -3.0]}})


def test_rows_summary_and_fault_report_from_samples() -> None:
    # 30 fps emitted, 3 of them repeated each second; the viewer receives 25 fps; RSS grows 1 MB/s.
    samples = [_sample(float(t), 30 * t, 3 * t, rss=100.0 + t) for t in range(11)]

    def received(i: int, t: float) -> float:
        return 25.0 * t

    row = soak_stats.row(1, samples, 0.0, 10.0, ["s0"], received)
    assert row["min_emitted_fps"] == 30.0 and row["min_rendered_fps"] == 27.0
    assert row["min_received_fps"] == 25.0 and row["repeated"] == 30 and row["failed"] == 0
    assert row["max_drift_ms"] == 3.0 and row["mean_av_offset_ms"] == -1.0
    assert "minute 1" in soak_stats.row_line(row)
    summary = soak_stats.summary([row], samples, frames_received=250)
    assert summary["rss_mb"]["slope_mb_per_min_second_half"] == pytest.approx(60.0)
    assert summary["fds"]["growth"] == 0 and summary["failed_sessions"] == 0

    fault = soak_faults.Fault("engine", 2.0, 0, window_s=3.0, started=2.0, ended=2.0)
    report = soak_stats.fault_report(fault, samples, ["s0"], received, check_at=10.0)
    assert report["recovered"] is True and report["others_min_emitted_fps"] is None  # no other session
    failed = samples[:5] + [_sample(float(t), 120, 12, state="failed") for t in range(5, 11)]
    report = soak_stats.fault_report(fault, failed, ["s0"], received, check_at=10.0)
    assert report["recovered"] is False
    assert soak_stats.summary([row], failed, 0)["failed_sessions"] == 1


@pytest.mark.slow
def test_soak_with_faults_injects_all_five(capsys: pytest.CaptureFixture[str]) -> None:
    # ~45 s: two sessions, 30 s measured, every fault scaled down into it. Only that each fault went in
    # and was judged is asserted: whether sessions survive is the server's part, fps depend on the cores.
    argv = ["bench", "soak", "--sessions", "2", "--minutes", "0.5", "--size", "256", "--faults"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    faults = json.loads(lines[-1])["summary"]["faults"]
    assert [f["fault"] for f in faults] == ["nan", "engine", "stop", "kill", "udp"]
    for fault in faults:
        assert fault["at_s"] is not None and not fault["note"].startswith("not injected"), fault
        assert isinstance(fault["recovered"], bool) and fault["others_min_emitted_fps"] is not None
    assert sum(line.startswith("fault ") and " done at " in line for line in lines) == 5
