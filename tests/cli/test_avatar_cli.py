"""`facecast avatar add --name` on a photo already in the store renames it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecast.__main__ import main


def test_add_with_a_new_name_renames_the_stored_avatar(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "store")]
    photo = str(media_dir / "grace_hopper_512.png")
    assert main(["avatar", "add", photo, "--size", "128", "--name", "First", *store]) == 0
    aid = capsys.readouterr().out.strip()
    assert main(["avatar", "add", photo, "--size", "128", "--name", "Grace Hopper", *store]) == 0
    assert capsys.readouterr().out.strip() == aid
    assert main(["avatar", "show", aid, *store]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Grace Hopper"
    assert main(["avatar", "list", *store]) == 0
    assert capsys.readouterr().out.strip() == f"{aid}  128px  Grace Hopper"
