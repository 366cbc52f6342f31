"""facecast bench look: the contact sheet's layout, and that each shape's cell shows a difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.__main__ import main
from facecast.bench.look import COLUMNS, LABEL_W, TITLE_H, portrait_cells
from facecast.models.avatar import AvatarStore

RIGHT_EYE = [33, 133, 159, 145]
LEFT_EYE = [263, 362, 386, 374]
MOUTH = [61, 291, 0, 17]


def region_change(a: np.ndarray, b: np.ndarray, lm: np.ndarray, indices: list[int], pad: int = 4) -> float:
    """Mean absolute difference of two cells inside the padded box of some landmarks."""
    lo = np.floor(lm[indices].min(axis=0)).astype(int) - pad
    hi = np.ceil(lm[indices].max(axis=0)).astype(int) + pad
    box = (slice(max(lo[1], 0), hi[1]), slice(max(lo[0], 0), hi[0]))
    return float(np.abs(a[box].astype(np.float32) - b[box].astype(np.float32)).mean())


@pytest.fixture(scope="module")
def grace_cells(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, np.ndarray]:
    avatar = AvatarStore(tmp_path_factory.mktemp("look")).resolve(str(media_dir / "grace_hopper_512.png"))
    cells, lm = portrait_cells(avatar, 160)
    return {col.title: cell for col, cell in zip(COLUMNS, cells, strict=True)}, lm


def test_sheet_has_a_row_per_portrait_and_a_column_per_shape(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    portraits = [media_dir / "grace_hopper_512.png", media_dir / "astronaut_512.png"]
    assert main(["bench", "look", *map(str, portraits), "-o", str(out), "--size", "64"]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert len(COLUMNS) == 9
    assert sheet.shape == (TITLE_H + 2 * 64, LABEL_W + 9 * 64, 3)
    # titles and names are drawn (dark pixels on the white bands), cells hold images
    assert (sheet[:TITLE_H, LABEL_W:] < 100).any() and (sheet[TITLE_H:, :LABEL_W] < 100).any()
    assert sheet[TITLE_H:, LABEL_W:].std() > 20


def test_cells_differ_where_the_shape_acts(grace_cells: tuple[dict, np.ndarray]) -> None:
    cells, lm = grace_cells
    rest = cells["at rest"]
    assert rest.shape == (160, 160, 3)
    eyes = RIGHT_EYE + LEFT_EYE
    blink = cells["blink closed"]
    assert region_change(blink, rest, lm, eyes) > 2.0  # the lids move...
    assert region_change(blink, rest, lm, MOUTH) < 0.5  # ...and nothing else does
    assert region_change(cells["open vowel"], rest, lm, MOUTH) > 2.0
    assert region_change(cells["open vowel"], rest, lm, eyes) < 0.5
    for turn in ("head -15 deg", "head +15 deg"):
        assert np.abs(cells[turn].astype(np.float32) - rest).mean() > 3.0
    assert np.abs(cells["head -15 deg"].astype(np.float32) - cells["head +15 deg"]).mean() > 3.0
    for title in ("rounded", "spread", "F/V", "bilabial closure"):
        assert cells[title].shape == rest.shape


def test_unknown_portrait_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "look", str(tmp_path / "missing.png"), "-o", str(tmp_path / "s.png")]) != 0
    assert "missing.png" in capsys.readouterr().err
