"""`render --background transparent`: a WebM (VP9 + alpha) and a MOV (ProRes 4444) whose alpha is the
person's matte as the engine moved it; an MP4 is refused in one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecast.cli.render import render_warp
from facecast.models.avatar import Avatar
from facecast.models.render.background import parse_background
from facecast.models.render.engine import WarpEngine
from facecast.outputs.alpha_writer import alpha_frames
from facecast.outputs.offline_render import render_to_file

SIZE = 128


@pytest.mark.parametrize("suffix", [".webm", ".mov"])
def test_alpha_file_carries_the_moving_matte(
    suffix: str, grace: Avatar, speech: np.ndarray, tmp_path: Path
) -> None:
    audio = speech[:16000]
    out = tmp_path / f"clip{suffix}"
    background = parse_background("transparent")
    frames = render_warp(grace, audio, out, size=SIZE, background=background)
    decoded = [f.to_ndarray(format="rgba") for f in alpha_frames(out)]
    assert len(decoded) == frames == 30 and decoded[0].shape == (SIZE, SIZE, 4)
    # The same render again (deterministic), its alphas straight from the engine.
    engine = WarpEngine(grace, size=SIZE, background=background)
    reference = tmp_path / f"again{suffix}"
    render_to_file(engine, audio, reference, transparent=True)
    alphas = [f.to_ndarray(format="rgba")[..., 3] for f in alpha_frames(reference)]
    assert all(np.array_equal(a[..., 3], b) for a, b in zip(decoded, alphas, strict=True))
    matte = engine.renderer.matte
    assert matte is not None
    first = decoded[0][..., 3].astype(int)
    assert np.abs(first - matte.astype(int)).mean() < 6  # the matte, barely moved at frame 0
    assert (first == 0).mean() > 0.2 and (first == 255).mean() > 0.4  # background clear, person solid


def test_an_mp4_cannot_be_transparent(tmp_path: Path, media_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facecast", "render", "--audio", str(media_dir / "speech_1.wav"),
         "--background", "transparent", "-o", str(tmp_path / "out.mp4"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "facecast: error: a .mp4 file cannot carry transparency: use .webm (VP9 with alpha) or .mov (ProRes 4444)"
    )
    assert not (tmp_path / "out.mp4").exists()
