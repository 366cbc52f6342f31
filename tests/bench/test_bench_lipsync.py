"""facecast bench lipsync: lag sign, timestamps, and clean refusals, on clips with known sync."""

from __future__ import annotations

import json
import math
import wave
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from synth_talking import MouthOpener

from facecast.__main__ import main
from facecast.bench.lipsync import best_of, lag_correlations, measure_lipsync
from facecast.bench.mouth_track import MediaInputError, track_mouth, track_mouth_frames
from facecast.bench.speech_envelope import AudioTrack, decode_audio, rms_per_frame


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lag_sign_positive_when_video_is_late() -> None:
    rng = np.random.default_rng(0)
    rms = rng.random(80)
    opening = np.concatenate([np.zeros(4), rms[:-4]])  # the mouth moves 4 frames after the sound
    corr = lag_correlations(opening, rms, 6)
    assert sorted(corr) == list(range(-6, 7))
    assert best_of(corr)[0] == 4
    assert corr[4] == pytest.approx(1.0, abs=0.05)


def test_constant_mouth_has_no_defined_correlation() -> None:
    corr = lag_correlations(np.full(50, 0.1), np.random.default_rng(1).random(50), 3)
    assert all(math.isnan(c) for c in corr.values())
    assert best_of(corr) == (None, pytest.approx(float("nan"), nan_ok=True))


def test_rms_windows_follow_sample_times_not_indices() -> None:
    rate = 1000
    samples = np.zeros(1000, np.float32)
    samples[100:140] = 0.5  # loud between 0.6 and 0.64 s on the timeline (stream starts at 0.5 s)
    audio = AudioTrack(samples, 0.5 + np.arange(1000) / rate, rate)
    pts = np.arange(0, 1.6, 0.04)
    rms = rms_per_frame(audio, pts, 0.04)
    assert np.isnan(rms[:12]).all()  # before the audio starts
    assert int(np.nanargmax(rms)) == 15  # frame [0.60, 0.64)
    assert rms[15] == pytest.approx(0.5)


def test_decode_audio_places_samples_by_pts(
    talking_clip: Callable[..., Path], speech: tuple[np.ndarray, np.ndarray]
) -> None:
    # Muxed to start at 0.2 s. The MP4 then starts with an empty edit and keeps the AAC priming
    # frame (decoded at 0.2 - 1024/16000 s); what matters is that the speech itself sits at 0.2 s.
    audio = decode_audio(talking_clip(0, 0.2))
    assert audio.sample_rate == 16000
    assert 0.13 <= audio.start_s <= 0.2
    source = speech[0].astype(np.float64)
    start = int(np.searchsorted(audio.times_s, 0.2 - 1e-6))
    shifts = range(-40, 41)
    scores = [float(np.dot(audio.samples[start + s : start + s + 32000], source[:32000])) for s in shifts]
    assert list(shifts)[int(np.argmax(scores))] == 0


def test_decode_audio_trims_priming_at_time_zero(talking_clip: Callable[..., Path]) -> None:
    # Starting at 0, the muxer's edit list trims the priming and the decoder stamps the first sample 0.
    audio = decode_audio(talking_clip(0))
    assert audio.start_s == 0.0
    assert audio.times_s[-1] == pytest.approx(3.0, abs=0.07)


def test_decode_audio_mixes_stereo_integer_wav(tmp_path: Path) -> None:
    path = tmp_path / "stereo8k.wav"
    left = np.zeros(8000, np.int16)
    left[4000:4080] = 16384
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.stack([left, np.zeros_like(left)], axis=1).tobytes())
    audio = decode_audio(path)
    assert audio.sample_rate == 8000 and audio.samples.shape == (8000,)
    assert audio.times_s[int(np.argmax(audio.samples))] == pytest.approx(0.5)
    assert float(audio.samples.max()) == pytest.approx(0.25)  # 0.5 full scale, averaged with silence


def test_aligned_clip_correlates_at_lag_zero(talking_clip: Callable[..., Path]) -> None:
    result = measure_lipsync(talking_clip(0))
    assert result.frames == 75 and result.fps == pytest.approx(25.0)
    assert result.face_ratio == 1.0
    assert result.best_lag == 0
    assert result.best_corr > 0.9
    assert result.corr_by_lag[0] - max(result.corr_by_lag[-3], result.corr_by_lag[3]) > 0.2
    assert result.opening_p5 < 0.02 and result.opening_p95 > 0.1


def test_late_video_reports_positive_lag(
    talking_clip: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["bench", "lipsync", str(talking_clip(3)), "--max-lag", "6"], capsys)
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["best_lag"] == 3
    assert report["best_lag_ms"] == pytest.approx(120.0)
    assert report["best_corr"] > 0.9
    assert report["frames"] == 75 and report["face_ratio"] == 1.0 and report["fps"] == pytest.approx(25.0)
    assert set(report["corr_by_lag"]) == {str(lag) for lag in range(-6, 7)}
    assert "<- best" in out and "positive = video lags the audio" in out


def test_late_audio_stream_start_is_honoured(talking_clip: Callable[..., Path]) -> None:
    # The audio stream starts 5 frames in and the mouth follows it there: in sync. A tool counting
    # samples from the first audio frame instead of reading its pts would report lag +5.
    result = measure_lipsync(talking_clip(0, 0.2))
    assert result.audio_start_s > 0.1
    assert result.best_lag == 0 and result.best_corr > 0.9


def test_static_face_scores_low(static_clip: Path) -> None:
    result = measure_lipsync(static_clip)
    assert result.face_ratio == 1.0
    assert not result.best_corr > 0.5  # nan (constant mouth) or chance-level jitter
    assert result.opening_p95 - result.opening_p5 < 0.01


def test_faceless_clip_reports_zero_face_ratio(
    faceless_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["bench", "lipsync", str(faceless_clip)], capsys)
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["face_ratio"] == 0.0 and report["frames"] == 75
    assert report["best_lag"] is None and report["best_corr"] is None and report["opening_p95"] is None
    assert "no face found" in out


def test_track_mouth_gives_pts_and_nan_without_face(
    talking_clip: Callable[..., Path], faceless_clip: Path
) -> None:
    track = track_mouth(talking_clip(0))
    np.testing.assert_allclose(track.pts_s, np.arange(75) / 25.0, atol=1e-6)
    assert (track.width, track.height) == (256, 256)
    assert np.nanmax(track.opening) > 0.15 and np.nanmin(track.opening) < 0.02
    assert np.isnan(track_mouth(faceless_clip).opening).all()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, m: d / "missing.mp4", "does not exist"),
        (
            lambda d, m: _write(d / "notes.mp4", b"this is text, not a video\n" * 20),
            "not a readable media file",
        ),
        (lambda d, m: m / "speech_1.wav", "no video stream"),
    ],
)
def test_bad_inputs_give_one_clear_line(
    tmp_path: Path,
    media_dir: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[..., Path],
    message: str,
) -> None:
    code, out, err = run_cli(["bench", "lipsync", str(make(tmp_path, media_dir))], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("facecast: error:") and message in err


def test_video_without_audio_is_refused(silent_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["bench", "lipsync", str(silent_clip)], capsys)
    assert code == 2 and "no audio stream" in err
    with pytest.raises(MediaInputError):
        measure_lipsync(silent_clip)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_track_mouth_frames_in_memory(opener: MouthOpener) -> None:
    frames = [cv2.cvtColor(opener.render(a), cv2.COLOR_BGR2RGB) for a in (0.0, 0.8, 0.0)]
    track = track_mouth_frames(frames, [0.0, 0.04, 0.08], fps=25.0)
    closed, wide, closed_again = track.opening
    assert wide > 0.15 and max(closed, closed_again) < 0.02
    # opening_at: the frame on screen at each time, nan before the first and after the last frame ends.
    np.testing.assert_allclose(track.opening_at(np.array([0.039, 0.04, 0.119])), [closed, wide, closed_again])
    assert np.isnan(track.opening_at(np.array([-0.01, 0.12]))).all()
    with pytest.raises(ValueError, match="3 frames but 2 timestamps"):
        track_mouth_frames(frames, [0.0, 0.04], fps=25.0)
