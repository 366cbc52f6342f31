"""`facecast bench aniportrait` runs on the tiny fixture weights and ends with a JSON line of figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecast.__main__ import main


def test_bench_tiny(fixture_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "aniportrait", "--weights", str(fixture_a), "--size", "64", "--frames", "4"]
    assert main([*args, "--steps", "1", "--repeats", "1", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("unet_s_per_step_per_window", "vae_decode_s_per_frame", "total_s_per_output_frame"):
        assert figures[key] > 0
    assert figures["unet_evaluations_per_output_frame"] == 2.0  # 1 step x 1 window x CFG pair


def test_bench_bad_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "aniportrait", "--weights", str(tmp_path), "--device", "cpu"]) != 0
    assert "reference_unet.pth is missing" in capsys.readouterr().err


def test_random_full_size_pipeline_builds_on_meta() -> None:
    import torch

    from facecast.bench.aniportrait_speed import _random_full_size_pipeline

    pipe = _random_full_size_pipeline(torch.device("meta"), torch.float16)
    assert pipe.dtype == torch.float16
    pose_guider_params = sum(p.numel() for p in pipe.pose_guider.parameters())
    assert abs(pose_guider_params / 1e6 - 167.5) < 0.1  # docs/aniportrait.md §4
    assert len(pipe.reference.bank) == 0 and len(pipe.bank_recorder._handles) == 16
