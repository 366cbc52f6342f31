"""Video with transparency: WebM (VP9 + alpha) and MOV (ProRes 4444) read back with their alpha, in step
with their audio, whole or absent; any other extension refused with one sentence."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from facecast.frames import AUDIO_RATE_HZ, OutputFrame, frame_samples
from facecast.outputs.alpha_writer import (
    ALPHA_FORMATS,
    AlphaVideoOutput,
    alpha_file,
    alpha_format_error,
    alpha_frames,
)
from facecast.outputs.base import OutputState, StaticHost

FPS, SIZE, FRAMES = 25, 64, 20


def matte(k: int) -> np.ndarray:
    """An ellipse with a soft edge (about 6 px of ramp) that moves right one pixel a frame."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    d = np.hypot((x - 24 - k) / 18, (y - 32) / 26)
    return np.round(np.clip((1.0 - d) / 0.25, 0.0, 1.0) * 255).astype(np.uint8)


def picture(k: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([x * 3 + k * 2, y * 3, np.full_like(x, 160)], axis=-1).astype(np.uint8)


def tone(k: int) -> np.ndarray:
    start, end = frame_samples(k, FPS)
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(start, end) / AUDIO_RATE_HZ)).astype(np.float32)


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]), frames[0].sample_rate


# measured (worst frame): alpha 0.09 (ProRes) / 0.28 (VP9) levels, RGB 0.0 / 1.9 where opaque; bounds with room
@pytest.mark.parametrize(("ext", "alpha_mae", "rgb_mae"), [(".mov", 1.0, 1.5), (".webm", 3.0, 8.0)])
def test_frames_come_back_with_their_alpha_in_step_with_the_audio(
    tmp_path: Path, ext: str, alpha_mae: float, rgb_mae: float
) -> None:
    path = tmp_path / f"clip{ext}"
    out = AlphaVideoOutput(path)
    out.start(StaticHost(fps=FPS, size=SIZE))
    for k in range(FRAMES):
        out.write(k, picture(k), matte(k), tone(k))
    assert not path.exists()  # only a finished file takes its name
    out.stop()
    assert out.state is OutputState.STOPPED and out.frames == FRAMES
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == FPS
    frames = list(alpha_frames(path))
    assert len(frames) == FRAMES
    assert [f.time for f in frames] == pytest.approx([k / FPS for k in range(FRAMES)], abs=1e-3)
    for k, frame in enumerate(frames):
        assert frame.format.name.startswith("yuva")
        rgba = frame.to_ndarray(format="rgba")
        assert np.abs(rgba[..., 3].astype(int) - matte(k)).mean() < alpha_mae
        opaque = matte(k) == 255
        assert opaque.sum() > 500
        assert np.abs(rgba[..., :3].astype(int) - picture(k))[opaque].mean() < rgb_mae

    audio, rate = decode_audio(path)
    assert rate == ALPHA_FORMATS[ext].audio_rate
    written = frame_samples(FRAMES, FPS)[0]
    assert audio.size / rate == pytest.approx(written / AUDIO_RATE_HZ, abs=1 / FPS)
    assert audio.size == written * rate // AUDIO_RATE_HZ  # exactly: Opus's priming and padding are trimmed
    level = audio.astype(np.float64) / (32768.0 if audio.dtype == np.int16 else 1.0)
    assert np.sqrt(np.mean(level[rate // 10 : -rate // 10] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_the_mov_holds_exactly_the_samples_and_stale_frames_play_silence(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    out = AlphaVideoOutput(path)
    out.start(StaticHost(fps=FPS, size=SIZE))
    out.write(0, picture(0), matte(0), tone(0), stale=True)  # before the first fresh frame: not in the file
    for k in range(1, 11):
        out.write(k, picture(k), matte(k), tone(k), stale=5 <= k < 8)
    out.stop()
    assert out.frames == 7 and len(list(alpha_frames(path))) == 7
    audio, _ = decode_audio(path)
    want = np.concatenate([np.zeros_like(tone(k)) if 5 <= k < 8 else tone(k) for k in range(1, 11)])
    assert audio.size == want.size  # PCM: sample for sample, to within 16-bit rounding
    assert np.abs(audio.astype(np.int32) - np.round(want * 32768.0)).max() <= 1


@pytest.mark.parametrize("ext", [".webm", ".mov"])
def test_a_failed_output_leaves_no_file(tmp_path: Path, ext: str) -> None:
    out = AlphaVideoOutput(tmp_path / f"clip{ext}")
    out.start(StaticHost(fps=FPS, size=SIZE))
    for k in range(3):
        out.write(k, picture(k), matte(k), tone(k))
    out.fail("disk full")
    out.stop()
    assert list(tmp_path.iterdir()) == [] and out.state is OutputState.FAILED


def test_a_block_that_raises_leaves_no_file(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="alpha"),
        alpha_file(tmp_path / "clip.webm", fps=FPS, size=SIZE) as w,
    ):
        w.write_video(0, picture(0), matte(0))
        w.write_video(1, picture(1), matte(1)[:32])  # a matte of the wrong size
    assert list(tmp_path.iterdir()) == []


def test_session_frames_without_a_matte_fail_the_output(tmp_path: Path) -> None:
    out = AlphaVideoOutput(tmp_path / "clip.webm")
    out.start(StaticHost(fps=FPS, size=SIZE))
    image, audio = picture(0), tone(0)
    out.on_frame(
        OutputFrame(
            index=0,
            fps=FPS,
            image=image,
            audio=audio,
            generation=0,
            speech=False,
            video=av.VideoFrame.from_ndarray(image, format="rgb24"),
            audio_frame=av.AudioFrame(format="s16", layout="mono", samples=audio.size),
        )
    )
    out.stop()
    assert out.state is OutputState.FAILED and out.error and "alpha" in out.error
    assert list(tmp_path.iterdir()) == []


def test_only_formats_that_carry_alpha_are_accepted(tmp_path: Path) -> None:
    assert alpha_format_error("out/clip.webm") is None and alpha_format_error(Path("clip.MOV")) is None
    for name, ext in [("clip.mp4", ".mp4"), ("clip.mkv", ".mkv")]:
        error = alpha_format_error(name)
        assert (
            error
            == f"a {ext} file cannot carry transparency: use .webm (VP9 with alpha) or .mov (ProRes 4444)"
        )
    assert "without an extension" in (alpha_format_error("clip") or "")
    with pytest.raises(ValueError, match=r"\.mp4 file cannot carry transparency"):
        AlphaVideoOutput(tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []
