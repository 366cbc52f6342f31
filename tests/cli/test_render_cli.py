"""`facecast render` end to end on real photos and speech, and its refusals of bad input."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facecast.__main__ import main
from facecast.bench.lipsync import measure_lipsync


def _facecast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, media_dir: Path, store: Path) -> Path:
    out = tmp_path_factory.mktemp("render") / "goforward.mp4"
    code = main(["render", "--avatar", str(media_dir / "grace_hopper_512.png"), "--audio",
                 str(media_dir / "goforward.wav"), "-o", str(out), "--store", str(store), "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_render_is_h264_aac_with_the_audio_duration(rendered: Path, media_dir: Path) -> None:
    with av.open(str(rendered)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert (v.width, v.height) == (512, 512)
        frames = [f for f in c.decode(video=0)]
    audio_s = 2.79  # goforward.wav
    assert abs(len(frames) / 30 - audio_s) <= 1 / 30 + 0.01
    assert frames[0].time == 0.0 and frames[-1].time == pytest.approx((len(frames) - 1) / 30)
    with av.open(str(rendered)) as c:
        first_audio = next(iter(c.decode(audio=0)))
    # AAC priming is hidden by the edit list: the first decoded sample plays at 0 s, like the first frame.
    assert abs(first_audio.time) < 1e-3


def test_render_is_lip_synced(rendered: Path) -> None:
    result = measure_lipsync(rendered)
    assert result.face_ratio >= 0.99
    assert result.best_lag is not None and abs(result.best_lag) <= 1
    assert result.best_corr is not None and result.best_corr >= 0.6


def test_unusual_audio_8khz_stereo_mp3_and_25fps(tmp_path: Path, media_dir: Path, store: Path) -> None:
    """Valid but unusual input gives a correct result: 8 kHz stereo MP3 at 25 fps, 256 px."""
    mp3 = tmp_path / "speech.mp3"
    with av.open(str(media_dir / "goforward.wav")) as src, av.open(str(mp3), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=8000)
        stream.layout = "stereo"
        resampler = av.AudioResampler(format="s16p", layout="stereo", rate=8000)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                for p in stream.encode(f):
                    dst.mux(p)
        for p in stream.encode(None):
            dst.mux(p)
    out = tmp_path / "out.mp4"
    code = main(["render", "--audio", str(mp3), "-o", str(out), "--fps", "25", "--size", "256",
                 "--avatar", str(media_dir / "grace_hopper_512.png"), "--store", str(store), "--quiet"])  # fmt: skip
    assert code == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (256, 256)
        assert v.average_rate == Fraction(25)
        n = sum(1 for _ in c.decode(video=0))
    assert abs(n / 25 - 2.79) <= 0.1  # mp3 padding may add a frame or two


def _bad_inputs(tmp_path: Path, media_dir: Path) -> dict[str, tuple[list[str], str]]:
    text_jpg = tmp_path / "photo.jpg"
    text_jpg.write_text("not an image at all\n")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(blank)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    speech = str(media_dir / "goforward.wav")
    grace = str(media_dir / "grace_hopper_512.png")
    return {
        "photo without a face": (["--avatar", str(blank), "--audio", speech], "no face"),
        "text file named .jpg": (["--avatar", str(text_jpg), "--audio", speech], "not an image"),
        "empty audio": (["--avatar", grace, "--audio", str(empty)], "empty"),
        "corrupt audio": (["--avatar", grace, "--audio", str(corrupt)], "cannot be decoded"),
        "missing audio": (["--avatar", grace, "--audio", str(tmp_path / "nope.wav")], "does not exist"),
        "missing photo": (["--avatar", str(tmp_path / "nope.png"), "--audio", speech], "does not exist"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "photo without a face",
        "text file named .jpg",
        "empty audio",
        "corrupt audio",
        "missing audio",
        "missing photo",
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, media_dir: Path, store: Path, case: str) -> None:
    args, words = _bad_inputs(tmp_path, media_dir)[case]
    out = tmp_path / "out.mp4"
    proc = _facecast("render", *args, "-o", str(out), "--store", str(store), "--quiet")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("facecast: error:")]
    assert len(errors) == 1 and words in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_help_explains_every_command() -> None:
    proc = _facecast("--help")
    assert proc.returncode == 0
    for command in ("render", "avatar", "bench"):
        assert command in proc.stdout
    render_help = _facecast("render", "--help").stdout
    assert "--pose-template" in render_help and "--fps" in render_help
