"""Background specs, plates and edge colour: one sentence for bad input, no fringe of the photo's background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.models.render.background import (
    BackgroundError,
    Compositor,
    decontaminate,
    parse_background,
)


def test_specs_parse_and_bad_ones_are_refused_in_one_sentence(tmp_path: Path, media_dir: Path) -> None:
    assert parse_background("keep").kind == "keep" and not parse_background("keep").needs_matte
    assert parse_background("color:#00B140").color == (0, 177, 64)
    assert parse_background("transparent").needs_matte and parse_background("blur").kind == "blur"
    picture = parse_background(f"image:{media_dir / 'astronaut.png'}")
    assert picture.image is not None and picture.image.ndim == 3
    (tmp_path / "notes.png").write_text("not a picture")
    cases = {
        "color:#zz": "unknown colour '#zz': give it as color:#RRGGBB, e.g. color:#00b140",
        "color:green": "unknown colour 'green'",
        f"image:{tmp_path / 'notes.png'}": "is not an image PIL can read",
        f"image:{tmp_path / 'missing.png'}": "cannot be read",
        "sparkles": "unknown background 'sparkles': use keep, color:#RRGGBB, image:PATH, blur or transparent",
    }
    for spec, words in cases.items():
        with pytest.raises(BackgroundError) as refused:
            parse_background(spec)
        message = str(refused.value)
        assert words in message and "\n" not in message, message


def person_on_blue(size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a blue photo background, with a soft 8 px edge whose pixels mix the two."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    coverage = np.clip((size * 0.3 + 4 - r) / 8, 0, 1)  # an 8 px edge, as the matte has at 512
    image = coverage[..., None] * [200, 40, 40] + (1 - coverage[..., None]) * [30, 60, 220]
    return image.astype(np.uint8), np.round(coverage * 255).astype(np.uint8)


def test_edges_lose_the_photos_background_colour() -> None:
    image, matte = person_on_blue()
    edge = (matte > 20) & (matte < 235)
    assert image[edge][:, 2].mean() > 80  # the photo's edge: plenty of blue mixed in
    clean = decontaminate(image, matte)
    assert clean[edge][:, 2].mean() < 55 and np.abs(clean[edge][:, 0].astype(int) - 200).mean() < 12
    inside = matte == 255
    assert np.array_equal(clean[inside], image[inside])  # the person itself is untouched


def test_colour_plate_and_keep() -> None:
    image, matte = person_on_blue()
    green = Compositor(parse_background("color:#00ff00"), image, matte)
    out = green.compose(image, matte)
    assert tuple(out[0, 0]) == (0, 255, 0) and tuple(out[256, 256]) == tuple(image[256, 256])
    keep = Compositor(parse_background("transparent"), image, matte)
    assert keep.compose(image, matte) is image  # transparent: colour as is, alpha goes out beside it
