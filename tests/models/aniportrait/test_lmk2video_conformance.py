"""`facecast aniportrait check` reproduces fixture A's pipeline stages; a broken fixture gives one error line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from facecast.__main__ import main


def test_check_fixture_a_passes(fixture_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["aniportrait", "check", str(fixture_a)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {
        line.split()[1]: line
        for line in out.splitlines()
        if line.startswith("pipeline ") and "max_abs_err" in line
    }
    expected = [
        "clip_image_embeds", "ref_image_latents", "step0_window0_posefea0", "step0_window1_posefea4",
        "step0_window0_unet_out", "step0_v_pred_guided", "step2_latents_in", "final_latents", "video",
        "refbank_12__down_blocks.0.attentions.1.transformer_blocks.0",
    ]  # fmt: skip
    for name in expected:
        assert name in lines and lines[name].rstrip().endswith(("ok", "(isolated)")), name
    assert len(lines) == 45
    assert "all checks passed" in out


def test_check_missing_fixture_file(
    linked_fixture: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked_fixture(omit=("inputs/init_noise.npz",))
    code = main(["aniportrait", "check", str(folder), "--stage", "pipeline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "init_noise.npz" in err[0]


def test_check_missing_weights_file(
    linked_fixture: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked_fixture(omit=("pretrained_model/motion_module.pth",))
    code = main(["aniportrait", "check", str(folder), "--stage", "pipeline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "motion_module.pth" in err[0]


def test_check_no_such_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aniportrait", "check", str(tmp_path / "nope")]) != 0
    assert "does not exist" in capsys.readouterr().err
