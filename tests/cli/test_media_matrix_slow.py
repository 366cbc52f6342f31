"""Issue 2's quality bar on every portrait x speech file in ../shared/media (slow: ~3 min on 2 cores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from facecast.__main__ import main


@pytest.mark.slow
def test_every_render_is_lip_synced_and_closes_on_bilabials(
    media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "matrix", str(media_dir)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for row in report["lipsync"]:
        assert row["face_ratio"] >= 0.99, row
        assert abs(row["best_lag"]) <= 1, row
        assert row["best_corr"] >= 0.6, row
    for portrait, v in report["visemes"].items():
        assert not math.isnan(v["pooled_ratio"]) and v["pooled_ratio"] <= 0.5, portrait
    for portrait, grey in report["background"].items():
        assert grey < 2.0, portrait
