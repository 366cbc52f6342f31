"""An avatar records how much its crop was enlarged, and says so when the frame will look soft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from facecast.__main__ import main
from facecast.models.avatar import MAX_SHARP_SCALE, Avatar, AvatarStore, upscale_warning
from facecast.server.runner import RunningServer

# astronaut.png is a 512 x 512 photo with a small face: a 183 px crop, 92 px cheek to cheek.
ASTRONAUT_WARNING = (
    "the face is 92 px wide in the photo, so the 512 px frame is upscaled 2.8x and will look soft; "
    "use a larger photo or a size of 176 px (--size 176)"
)


def test_a_small_face_is_upscaled_with_a_warning(astronaut: Avatar) -> None:
    meta = astronaut.meta
    assert meta["crop_box"][2] == 183 and meta["face_width_px"] == 92
    assert meta["crop_scale"] == pytest.approx(512 / 183, abs=1e-3)
    assert meta["warning"] == ASTRONAUT_WARNING


def test_a_big_face_has_no_warning(grace: Avatar) -> None:
    assert 1 < grace.meta["crop_scale"] <= MAX_SHARP_SCALE  # 470 px crop to 512: 1.09x
    assert "warning" not in grace.meta


def test_the_suggested_size_is_sharp(astronaut: Avatar) -> None:
    assert upscale_warning(astronaut.meta, 176) is None
    assert upscale_warning(astronaut.meta, 228) is None  # 1.25x
    assert "the 256 px frame is upscaled 1.4x" in (upscale_warning(astronaut.meta, 256) or "")


def test_an_avatar_stored_by_an_older_facecast_gets_the_warning(
    tmp_path: Path, avatar_store: AvatarStore, astronaut: Avatar
) -> None:
    shutil.copytree(avatar_store.root / astronaut.id, tmp_path / astronaut.id)
    old = {k: v for k, v in astronaut.meta.items() if k not in ("crop_scale", "face_width_px", "warning")}
    (tmp_path / astronaut.id / "meta.json").write_text(json.dumps(old))
    store = AvatarStore(tmp_path)
    [listed] = store.list()
    assert listed["crop_scale"] == astronaut.meta["crop_scale"] and listed["warning"] == ASTRONAUT_WARNING
    assert store.get(astronaut.id).meta == listed
    assert upscale_warning({"name": "no crop recorded", "size": 512}) is None


def test_avatar_add_and_show_explain_the_crop(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path)]
    photo = media_dir / "astronaut.png"
    assert main(["avatar", "add", str(photo), *store]) == 0
    out, err = capsys.readouterr()
    aid = out.strip()
    assert err.strip() == f"facecast: warning: {photo}: {ASTRONAUT_WARNING}"
    assert main(["avatar", "show", aid, *store]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["crop_box"] == [133, 47, 183]  # stdout stays plain JSON
    assert (
        "crop: 183 px square at (133, 47) of the 512x512 photo, scaled 2.80x to 512 px (upscaled: soft)"
        in err
    )
    assert ASTRONAUT_WARNING in err


def test_avatar_show_of_a_sharp_crop(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path)]
    assert main(["avatar", "add", str(media_dir / "grace_hopper_512.png"), "--size", "256", *store]) == 0
    aid, err = capsys.readouterr()
    assert err == ""
    assert main(["avatar", "show", aid.strip(), *store]) == 0
    err = capsys.readouterr().err
    assert "scaled 0.54x to 256 px (not upscaled: sharp)" in err and "warning" not in err


def test_render_warns_at_its_output_size(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "short.wav"
    _write_wav(audio, np.zeros(8000, np.int16))  # half a second: the warning comes before any frame
    common = ["--avatar", str(media_dir / "astronaut.png"), "--audio", str(audio), "--store", str(tmp_path)]
    assert main(["render", *common, "-o", str(tmp_path / "a.mp4"), "--size", "256", "--quiet"]) == 0
    assert (
        "facecast: warning: the face is 92 px wide in the photo, so the 256 px frame"
        in capsys.readouterr().err
    )
    assert main(["render", *common, "-o", str(tmp_path / "b.mp4"), "--size", "176", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.tobytes())


async def _upload(server: RunningServer, data: bytes, filename: str) -> dict:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename)
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/avatars", data=form) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def test_the_upload_reply_carries_the_warning(server: RunningServer, media_dir: Path) -> None:
    small = await _upload(server, (media_dir / "astronaut.png").read_bytes(), "astronaut.png")
    big = await _upload(server, (media_dir / "grace_hopper_512.png").read_bytes(), "grace.png")
    try:
        # The test server renders 256 px frames: 1.4x from the 183 px crop.
        assert small["crop_scale"] == pytest.approx(256 / 183, abs=1e-3)
        assert small["warning"].startswith(
            "the face is 92 px wide in the photo, so the 256 px frame is upscaled"
        )
        assert big["crop_scale"] < 1 and "warning" not in big
    finally:
        server.registry.avatars.delete(small["id"])
        server.registry.avatars.delete(big["id"])
