"""facecast bench av_playout: the burst signal, the onset analysis, the reference's frame switching;
and (slow) one short end-to-end run in headless Chromium against a real server and the reference."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import numpy as np
import pytest

from facecast.bench import av_playout, av_playout_analysis
from facecast.bench.av_playout_reference import ReferenceProgram
from facecast.bench.av_playout_signal import (
    BURST_S,
    LEAD_IN_S,
    PERIOD_S,
    SHIFT_STEPS,
    AudioBlocks,
    burst_onsets_s,
    burst_train,
    detect_audio_onsets,
    match_onsets,
    median,
    spread,
    video_onsets,
)

FPS = 30


def block_rms(samples: np.ndarray, block: int) -> np.ndarray:
    usable = samples[: samples.size // block * block]
    return np.sqrt(np.mean(usable.reshape(-1, block).astype(np.float64) ** 2, axis=1))


def test_onsets_step_by_sevenths_of_a_frame() -> None:
    onsets = burst_onsets_s(9, FPS)
    assert onsets[0] == pytest.approx(LEAD_IN_S)
    shifts = onsets - (LEAD_IN_S + np.arange(9) * PERIOD_S)
    assert shifts * FPS * SHIFT_STEPS == pytest.approx([0, 1, 2, 3, 4, 5, 6, 0, 1])


@pytest.mark.parametrize("rate", [16000, 48000])
def test_bursts_start_sharply_at_the_intended_sample(rate: int) -> None:
    onsets = burst_onsets_s(4, FPS)
    samples, starts = burst_train(rate, onsets)
    assert list(starts) == [round(t * rate) for t in onsets]
    burst_len = round(BURST_S * rate)
    loud = float(np.percentile(block_rms(samples[starts[0] : starts[0] + burst_len], rate // 1000), 95))
    for start in starts:
        assert not np.any(samples[start - rate // 10 : start]), "silence right up to the onset"
        assert samples[start] != 0.0, "the onset sample is the first glottal pulse"
        first_ms = block_rms(samples[start : start + rate // 1000], rate // 1000)[0]
        assert first_ms > 0.5 * loud, "full loudness within the first millisecond"
        assert not np.any(samples[start + burst_len : start + burst_len + rate // 10]), "silence after"
    assert np.abs(samples).max() <= 0.5 + 1e-6


def playout_blocks(rate: int, latency_s: float, noise: float = 1e-4) -> tuple[AudioBlocks, np.ndarray]:
    """1 ms RMS blocks of the train as heard `latency_s` after sending (sent at t = onset time)."""
    onsets = burst_onsets_s(5, FPS)
    samples, _ = burst_train(rate, onsets)
    samples = samples + np.random.default_rng(0).normal(0.0, noise, samples.size).astype(np.float32)
    rms = block_rms(samples, rate // 1000)
    return AudioBlocks(latency_s + np.arange(rms.size) / 1000.0, rms), onsets


def test_audio_onsets_found_to_the_millisecond_and_matched_to_bursts() -> None:
    blocks, onsets = playout_blocks(48000, latency_s=0.2)
    detected = detect_audio_onsets(blocks)
    assert detected.size == onsets.size
    heard = match_onsets(detected, onsets)  # sent at the onset times, heard 200 ms later
    assert np.abs(heard - (onsets + 0.2)).max() <= 0.0011


def test_a_lost_burst_is_nan_and_the_rest_still_match() -> None:
    blocks, onsets = playout_blocks(16000, latency_s=0.35)
    keep = (blocks.times_s < onsets[2] + 0.3) | (blocks.times_s > onsets[2] + 0.35 + BURST_S + 0.05)
    quiet = AudioBlocks(blocks.times_s, np.where(keep, blocks.rms, 0.0))
    heard = match_onsets(detect_audio_onsets(quiet), onsets)
    assert np.isnan(heard[2])
    others = np.delete(np.arange(onsets.size), 2)
    assert np.abs(heard[others] - (onsets[others] + 0.35)).max() <= 0.0011


def mouth_track(open_from_s: list[float], frames: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display times at 30 fps, presentedFrames, and an opening that ramps over 3 frames from each time."""
    display = 0.5 + np.arange(frames) / FPS
    opening = np.full(frames, 0.01)
    for start in open_from_s:
        k = int(np.searchsorted(display, start))
        opening[k : k + 3] = [0.03, 0.09, 0.12]  # the midpoint of 0.01..0.12 is first reached at k + 1
        opening[k + 3 : k + 10] = 0.12
    return display, np.arange(frames), opening


def test_video_onset_is_the_first_displayed_frame_past_the_midpoint() -> None:
    display, presented, opening = mouth_track([1.0, 2.2, 3.4])
    audio = np.array([1.1, 2.3, np.nan])
    onsets, left_out = video_onsets(display, presented, opening, audio, PERIOD_S)
    k = int(np.searchsorted(display, 1.0)) + 1
    assert onsets[0] == pytest.approx(display[k])
    assert np.isfinite(onsets[1]) and np.isnan(onsets[2]) and left_out == 0


def test_a_burst_whose_preceding_frame_was_not_captured_is_left_out() -> None:
    display, presented, opening = mouth_track([1.0, 2.2])
    k = int(np.searchsorted(display, 1.0))  # the frame before the crossing frame k + 1
    keep = np.arange(display.size) != k
    onsets, left_out = video_onsets(
        display[keep], presented[keep], opening[keep], np.array([1.1, 2.3]), PERIOD_S
    )
    assert np.isnan(onsets[0]) and np.isfinite(onsets[1]) and left_out == 1


def test_no_mouth_motion_gives_no_onset() -> None:
    display, presented, _ = mouth_track([])
    onsets, _ = video_onsets(display, presented, np.full(display.size, 0.05), np.array([1.1]), PERIOD_S)
    assert np.isnan(onsets[0])


def test_median_and_spread_ignore_missing() -> None:
    values = np.array([-0.05, np.nan, -0.02, -0.03])
    assert median(values) == pytest.approx(-0.03)
    assert spread(values) == pytest.approx(0.03)
    assert np.isnan(spread(np.array([np.nan])))


def test_reference_opens_the_mouth_on_the_frame_containing_each_onset() -> None:
    onsets = burst_onsets_s(8, FPS)
    program = ReferenceProgram(onsets, FPS)
    assert not program.frame_open(100), "closed until the train starts"
    program.train_start = 10 * program.frame_samples
    frame_samples = program.frame_samples
    for onset in program.onsets + program.train_start:
        k = int(onset // frame_samples)
        assert program.frame_open(k), "the frame whose interval contains the onset is open"
        assert not program.frame_open(k - 1)
        last = int((onset + program.burst_samples - 1) // frame_samples)
        assert program.frame_open(last) and not program.frame_open(last + 1)
    start = int(program.onsets[3] + program.train_start)
    chunk = program.audio(start - 100, 960)
    assert not np.any(chunk[:100]) and chunk[100] != 0.0


def test_sync_settles_only_when_target_delays_hold_still() -> None:
    steady = [(20.0, 53.0)] * av_playout_analysis.SETTLED_FOR_S
    assert av_playout_analysis.sync_settled(steady)
    moved = [(20.0, 38.0)] + steady[1:]
    assert not av_playout_analysis.sync_settled(moved)
    assert not av_playout_analysis.sync_settled(steady[1:])


def test_targets_are_reported_not_enforced() -> None:
    verdict = av_playout_analysis.verdicts(
        {"concealment_pct": 35.0, "jitter_buffer_ms": 50.0, "offset_spread_ms": None, "displayed_fps": 29.9},
        -25.0,
    )
    assert verdict["concealment_pct"]["met"] is False
    assert verdict["jitter_buffer_ms"]["met"] is True
    assert verdict["lipsync_vs_reference_ms"]["met"] is False
    assert verdict["offset_spread_ms"]["met"] is None
    assert verdict["displayed_fps"]["met"] is True


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_bench_runs_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], run_cli: Callable[..., int]
) -> None:
    # A smoke run, not a measurement: a short warm-up (Chrome's sync may still be moving) and 3 bursts.
    monkeypatch.setattr(av_playout, "MIN_WARMUP_S", 2.0)
    monkeypatch.setattr(av_playout, "MAX_WARMUP_S", 6.0)
    assert run_cli(["bench", "av_playout", "--bursts", "3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["bench"] == "av_playout"
    for name in ("facecast", "reference"):
        part = result[name]
        assert part["audio_onsets_found"] >= 2, part
        assert part["bursts_measured"] >= 2, part
        assert part["face_found_pct"] >= 90, part
        assert part["displayed_fps"] > 10, part
        assert part["audio_clock"] == "AudioData.timestamp", part
    assert result["facecast_minus_reference_median_ms"] is not None


@pytest.fixture
def run_cli() -> Callable[..., int]:
    from facecast.__main__ import main

    return main
