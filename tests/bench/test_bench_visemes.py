"""facecast bench visemes: closed lips on P/B/M vs open vowels, on clips where only the mouth shape differs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facecast.__main__ import main
from facecast.bench.visemes import BILABIALS, OPEN_VOWELS, load_phones, measure_clip, viseme_ratio


def test_librivox_alignment_parses(media_dir: Path) -> None:
    # "he was not an ill disposed young man"
    phones = load_phones(media_dir / "librivox_sas01_0880.phone.json")
    labels = [p.label for p in phones]
    assert labels[:3] == ["SIL", "HH", "IY"]
    assert [p.label for p in phones if p.label in BILABIALS] == ["P", "M"]
    assert [p.label for p in phones if p.label in OPEN_VOWELS] == ["AH", "AA", "AH", "AH", "AE"]
    man_m = next(p for p in phones if p.label == "M")
    assert man_m.centre_s == pytest.approx(2.33 + 0.05)


def test_ratio_of_medians() -> None:
    assert viseme_ratio(np.array([0.01, 0.02, 0.9]), np.array([0.2, 0.1, 0.3])) == pytest.approx(0.1)
    assert np.isnan(viseme_ratio(np.array([]), np.array([0.2])))
    assert np.isnan(viseme_ratio(np.array([0.1]), np.zeros(3)))


def test_closed_bilabials_score_low_and_reverse_high(
    viseme_clip: Callable[..., Path], viseme_alignment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, reversed_ = viseme_clip(True), viseme_clip(False)
    code = main(["bench", "visemes", str(good), str(viseme_alignment), str(reversed_), str(viseme_alignment)])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    first, second = report["clips"]
    # Stress digits (AA1, AH0, ...) are stripped: all 7 vowels count, as do the 7 bilabials.
    assert (first["n_bilabial"], first["n_open"]) == (7, 7) == (second["n_bilabial"], second["n_open"])
    assert first["ratio"] < 0.3 and first["median_open"] > 0.15
    assert second["ratio"] > 3.0
    # Pooled over both clips, each phone class is half open, half closed.
    assert 0.5 < report["pooled_ratio"] < 2.0
    assert "pooled ratio" in out and good.name in out


def test_each_phone_reads_its_own_frames(viseme_clip: Callable[..., Path], viseme_alignment: Path) -> None:
    clip = measure_clip(viseme_clip(True), viseme_alignment)
    assert clip.face_ratio == 1.0
    assert clip.ratio == pytest.approx(clip.median_bilabial / clip.median_open)
    assert clip.bilabial.max() < clip.open_vowel.min()


def test_speech_start_moves_the_alignment(
    viseme_clip: Callable[..., Path], viseme_alignment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    late = viseme_clip(True, 0.2)  # audio stream and speech both start 0.2 s into the video
    assert measure_clip(late, viseme_alignment, speech_start_s=0.2).ratio < 0.3
    assert measure_clip(late, viseme_alignment, speech_start_s=0.0).ratio > 1.0  # 5 frames off: wrong phones
    code = main(["bench", "visemes", str(late), str(viseme_alignment), "--speech-start", "0.2"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pooled_ratio"] < 0.3


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (lambda clip, d: [str(clip)], "pairs of VIDEO ALIGNMENT"),
        (lambda clip, d: [str(clip), str(d / "none.phone.json")], "cannot be read"),
        (
            lambda clip, d: [str(clip), str(_write(d / "bad.phone.json", '{"words": []}'))],
            "not a phone alignment",
        ),
        (lambda clip, d: [str(d / "none.mp4"), str(_write(d / "ok.json", '{"w": []}'))], "does not exist"),
    ],
)
def test_bad_inputs_give_one_clear_line(
    viseme_clip: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv_tail: Callable[[Path, Path], list[str]],
    message: str,
) -> None:
    code = main(["bench", "visemes", *argv_tail(viseme_clip(True), tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_registering_the_tools_imports_nothing_heavy() -> None:
    # `facecast --help` builds every parser: the bench modules must not pull in mediapipe or av.
    code = (
        "import sys, argparse, facecast.bench.lipsync as l, facecast.bench.visemes as v\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "l.register(sub); v.register(sub)\n"
        "print(sorted(m for m in ('mediapipe', 'av', 'cv2', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
