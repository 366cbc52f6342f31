"""`facecast bench stream` end to end on fixture A at 64 px with few exact steps: the figures it must print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecast.__main__ import main


def test_bench_stream_prints_the_issue_figures(fixture_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "stream", "--weights", str(fixture_a), "--size", "64", "--exact-steps", "3", "--seeds", "1",
            "--streams", "2"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["frames"] == 52  # the fixture's speech at 30 fps
    # 4 steps x (12 + 16 + 16 + 16 + (4 + 4)) frames over 52 output frames
    assert figures["unet_evals_per_frame"] == pytest.approx(4 * 68 / 52, abs=1e-3)
    assert figures["unet_evals_per_frame_exact"] == pytest.approx(3 * 2 * 5 * 16 / 52, abs=0.01)
    for key in ("speedup_vs_exact", "speedup_vs_exact_upstream_schedule", "stream_fps", "exact_fps"):
        assert figures[key] > 0, key
    assert 0 <= figures["seam_anchor_offline"] < figures["seam_anchor_independent"]
    for key in ("seam_score", "seam_ratio"):
        assert key in figures
    assert [row["hop"] for row in figures["latency_per_hop"]] == [4, 8, 12]
    assert figures["max_unet_batch"] >= 1 and figures["gpu_projection"]
    assert any("upstream's work schedule" in line for line in lines)


def test_bench_stream_refuses_bad_sizes(fixture_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "stream", "--weights", str(fixture_a), "--size", "60"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
