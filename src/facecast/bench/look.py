"""`facecast bench look PORTRAIT... -o sheet.png`: one contact sheet of the shapes a viewer should tell apart.

One row per portrait, one column per shape (rest, blink, visemes, head turns), each cell rendered
directly by the warp renderer from rig offsets, no audio and no motion driver, so the sheet shows
what the rig and the renderer make of each shape alone. Cells are cropped to the face (the rest
landmarks' box, enlarged 1.3x, the same box for a whole row so a head turn shows as a move).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TITLE_H = 28  # column titles band on top
LABEL_W = 170  # portrait file names at the row start
CROP_SCALE = 1.3


@dataclass(frozen=True)
class Column:
    title: str
    shape: str  # key of rig.SHAPES
    blink: float = 0.0
    yaw: float = 0.0  # degrees (pose ry)


COLUMNS = (
    Column("at rest", "rest"),
    Column("blink closed", "rest", blink=1.0),
    Column("open vowel", "open vowel"),
    Column("rounded", "rounded"),
    Column("spread", "spread"),
    Column("F/V", "F/V"),
    Column("bilabial closure", "closure"),
    Column("head -15 deg", "rest", yaw=-15.0),
    Column("head +15 deg", "rest", yaw=15.0),
)


def shapes() -> dict[str, Any]:
    """rig.SHAPES; for a rig from before it existed, the same table with F/V as a slight jaw drop
    (that rig has no F/V coefficient), so the sheet can show the code before and after."""
    rig = importlib.import_module("facecast.models.face.rig")
    table = getattr(rig, "SHAPES", None)
    if table is not None:
        return dict(table)
    E = rig.Expression
    return {
        "rest": E(), "open vowel": E(jaw=1.3), "rounded": E(jaw=0.35, round=1.0),
        "spread": E(jaw=0.25, spread=1.0), "F/V": E(jaw=0.1), "closure": E(press=1.0),
    }  # fmt: skip


def crop_box(landmarks: np.ndarray, size: int) -> tuple[int, int, int]:
    """(x0, y0, side) of a square around the landmarks' box enlarged CROP_SCALE x, kept in the image."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (lo + hi) / 2
    side = int(round(min(size, CROP_SCALE * float((hi - lo).max()))))
    x0, y0 = (int(round(min(max(c - side / 2, 0), size - side))) for c in centre)
    return x0, y0, side


def portrait_cells(avatar: Any, size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The row of one avatar: (cells (size, size, 3) uint8 RGB in COLUMNS order, the rest landmarks
    (468, 2) in cell pixels)."""
    import cv2

    from facecast.frames import MotionFrame
    from facecast.models.render.engine import WarpEngine

    engine = WarpEngine(avatar, size=avatar.size, head_motion=False)
    table = shapes()
    landmarks = np.asarray(engine.renderer.landmarks, np.float64)[:468, :2]
    x0, y0, side = crop_box(landmarks, engine.size)
    cells = []
    for col in COLUMNS:
        offsets = engine.rig.offsets(table[col.shape], col.blink)
        pose = np.array([0, col.yaw, 0, 0, 0, 0], np.float32)
        image = engine.renderer.render(MotionFrame(index=0, mesh_offsets=offsets, pose=pose, blink=col.blink))
        crop = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
        cells.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return cells, (landmarks - np.array([x0, y0])) * (size / side)


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """Black text at (x, baseline y), shrunk until it fits `width` pixels."""
    import cv2

    scale = 0.5
    while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        scale -= 0.05
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def contact_sheet(rows: list[tuple[str, list[np.ndarray]]], size: int) -> np.ndarray:
    """(TITLE_H + rows x size, LABEL_W + columns x size, 3) uint8 RGB: titles on top, names on the left."""
    sheet = np.full((TITLE_H + len(rows) * size, LABEL_W + len(COLUMNS) * size, 3), 255, np.uint8)
    for c, col in enumerate(COLUMNS):
        _text(sheet, col.title, LABEL_W + c * size + 4, TITLE_H - 9, size - 8)
    for r, (name, cells) in enumerate(rows):
        top = TITLE_H + r * size
        # long names in pieces of ~20 characters, one line each
        for i in range(0, min(len(name), 100), 20):
            _text(sheet, name[i : i + 20], 4, top + 20 + 18 * (i // 20), LABEL_W - 8)
        for c, cell in enumerate(cells):
            sheet[top : top + size, LABEL_W + c * size : LABEL_W + (c + 1) * size] = cell
    return sheet


def build_sheet(portraits: list[Path], size: int, store: Any) -> np.ndarray:
    rows = []
    for path in portraits:
        cells, _ = portrait_cells(store.resolve(str(path)), size)
        rows.append((path.name, cells))
    return contact_sheet(rows, size)


def _run(args: argparse.Namespace) -> int:
    from PIL import Image

    from facecast.cli.errors import CliError
    from facecast.models.avatar import AvatarError, AvatarStore

    if args.size < 32:
        raise CliError("--size must be at least 32 pixels")
    if args.output.suffix.lower() != ".png":
        raise CliError(f"output {args.output} must end in .png")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sheet = build_sheet(args.portraits, args.size, AvatarStore(Path(tmp)))
        except AvatarError as exc:
            raise CliError(str(exc)) from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.output)
    print(f"wrote {args.output} ({len(args.portraits)} rows x {len(COLUMNS)} columns, {args.size} px cells)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "look",
        help="contact sheet PNG: each portrait at rest, blinking, in each viseme and turned",
        description="Renders each portrait with the warp renderer in fixed shapes (rest, blink closed, open "
        "vowel, rounded, spread, F/V, bilabial closure, head turned -15 and +15 degrees), cropped to the "
        "face, one row per portrait.",
    )
    parser.add_argument("portraits", nargs="+", type=Path, help="portrait photos")
    parser.add_argument("-o", "--output", required=True, type=Path, help="sheet .png")
    parser.add_argument("--size", type=int, default=256, help="pixels per cell (default 256)")
    parser.set_defaults(func=_run)
