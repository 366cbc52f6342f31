from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.models.avatar import MAX_IMAGE_BYTES, Avatar, AvatarError, AvatarStore


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_crop_is_head_and_shoulders(astronaut: Avatar) -> None:
    assert astronaut.image.shape == (512, 512, 3)
    xs = astronaut.landmarks[:468, 0]
    face_width = xs.max() - xs.min()
    assert 0.4 < face_width < 0.6  # face about half the width
    assert 0.4 < xs.mean() < 0.6
    assert astronaut.mesh.shape == (468, 3) and astronaut.matrix.shape == (4, 4)


def test_same_photo_is_reused(tmp_path: Path, media_dir: Path) -> None:
    store = AvatarStore(tmp_path)
    data = (media_dir / "grace_hopper_512.png").read_bytes()
    first = store.add(data)
    stamp = (tmp_path / first.id / "meta.json").stat().st_mtime_ns
    second = store.add(data)
    assert second.id == first.id
    assert (tmp_path / first.id / "meta.json").stat().st_mtime_ns == stamp
    assert [m["id"] for m in store.list()] == [first.id]
    np.testing.assert_array_equal(store.get(first.id).image, first.image)
    store.delete(first.id)
    assert store.list() == []
    with pytest.raises(KeyError):
        store.get(first.id)


def test_crop_pads_a_tight_photo(tmp_path: Path, media_dir: Path) -> None:
    """A photo cropped tight around the face still gives a full head-and-shoulders frame (border replicated)."""
    image = np.asarray(Image.open(media_dir / "grace_hopper_512.png").convert("RGB"))[90:330, 130:370]
    avatar = AvatarStore(tmp_path).add(_png(image), size=256)
    assert avatar.image.shape == (256, 256, 3)
    assert avatar.meta["crop_box"][0] < 0 or avatar.meta["crop_box"][1] < 0


def _refusals(media_dir: Path) -> dict[str, tuple[bytes, str]]:
    grace = np.asarray(Image.open(media_dir / "grace_hopper_512.png").convert("RGB"))
    small = np.asarray(Image.open(media_dir / "astronaut.png").convert("RGB").resize((160, 160)))
    png = (media_dir / "grace_hopper_512.png").read_bytes()
    return {
        "no face": (_png(np.full((256, 256, 3), 120, np.uint8)), "no face"),
        "several faces": (_png(np.concatenate([grace, grace], axis=1)), "several faces"),
        "too small": (_png(small), "too small"),
        "not an image": (b"this is a text file, not a JPEG\n" * 10, "not an image"),
        "truncated": (png[: len(png) // 2], "truncated or corrupt"),
        "empty": (b"", "empty"),
        "too large": (b"\x89PNG" + bytes(MAX_IMAGE_BYTES), "larger than"),
    }


@pytest.mark.parametrize(
    "case", ["no face", "several faces", "too small", "not an image", "truncated", "empty", "too large"]
)
def test_refusals_write_nothing(tmp_path: Path, media_dir: Path, case: str) -> None:
    data, words = _refusals(media_dir)[case]
    store = AvatarStore(tmp_path / "store")
    with pytest.raises(AvatarError, match=words) as info:
        store.add(data)
    assert ". " not in str(info.value) and "\n" not in str(info.value)  # one sentence
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_given_name_renames_a_stored_photo(tmp_path: Path, media_dir: Path) -> None:
    store = AvatarStore(tmp_path)
    photo = tmp_path / "grace.png"
    photo.write_bytes((media_dir / "grace_hopper_512.png").read_bytes())
    first = store.add(photo.read_bytes(), name="first", size=128)
    again = store.add(photo.read_bytes(), name="second", size=128)
    assert again.id == first.id and again.meta["name"] == "second"
    assert store.get(first.id).meta["name"] == "second"
    assert [m["name"] for m in store.list()] == ["second"]
    assert store.add(photo.read_bytes(), size=128).meta["name"] == "second"  # no name: kept
    assert store.add(photo.read_bytes(), name="x", size=128, rename=False).meta["name"] == "second"
    assert store.resolve(str(photo), size=128).meta["name"] == "second"  # a file name passed to render: kept
    assert sorted(p.name for p in (tmp_path / first.id).iterdir()) == sorted(AvatarStore.FILES)
