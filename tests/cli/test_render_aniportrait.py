"""`facecast render --engine aniportrait` end to end on fixture A's tiny random weights (CPU)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from facecast.__main__ import main


def _render(fixture_a: Path, media_dir: Path, out: Path, store: Path, *extra: str) -> int:
    # The tiny weights work at 64 px, below --size's range: the size comes from a config, like aniportrait_tiny.yaml.
    config = out.parent / "tiny.yaml"
    config.write_text("render:\n  size: 64\n")
    return main(["render", "--engine", "aniportrait", "--weights", str(fixture_a), "--audio",
                 str(fixture_a / "audio" / "speech.wav"), "--avatar", str(media_dir / "grace_hopper_512.png"),
                 "--config", str(config), "--steps", "2", "-o", str(out), "--store", str(store), "--quiet",
                 *extra])  # fmt: skip


def test_audio_driven_pipeline_end_to_end(tmp_path: Path, fixture_a: Path, media_dir: Path) -> None:
    out = tmp_path / "ap.mp4"
    assert _render(fixture_a, media_dir, out, tmp_path / "store") == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (64, 64)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 52  # ceil(1.728 s * 30)
    assert np.std(np.stack(frames).astype(float)) > 5  # random weights: noise-like, but not blank


def test_pose_template_and_exact_flags(tmp_path: Path, fixture_a: Path, media_dir: Path) -> None:
    template = tmp_path / "poses.npy"
    np.save(template, np.load(fixture_a / "inputs" / "landmarks.npz")["pose_seq"])
    out = tmp_path / "ap.mp4"
    assert (
        _render(fixture_a, media_dir, out, tmp_path / "store", "--pose-template", str(template), "--exact")
        == 0
    )
    assert out.is_file()


def test_missing_or_wrong_weights_is_one_line(
    tmp_path: Path, fixture_a: Path, media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ap.mp4"
    wrong = tmp_path / "not_weights"
    wrong.mkdir()
    assert _render(wrong, media_dir, out, tmp_path / "store") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facecast: error:") and str(wrong) in err[0]
    assert not out.exists()
