"""Every --size takes one validated range (an even number from 128 to 1024) and says it in --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecast.__main__ import build_parser, main
from facecast.models import avatar as avatar_module

COMMANDS = {
    "avatar add": ["avatar", "add", "photo.png"],
    "render": ["render", "--audio", "speech.wav", "-o", "out.mp4"],
    "serve": ["serve"],
}
EXPECTED = "the size in pixels must be an even number from 128 to 1024"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("value", ["-5", "0", "100", "127", "257", "1025", "2048", "abc"])
def test_a_bad_size_is_one_sentence_for_every_command(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*COMMANDS[command], "--size", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"facecast {command}: error: argument --size: {EXPECTED}, not '{value}'"
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("value", [128, 512, 1024])
def test_the_range_is_accepted_everywhere(command: str, value: int) -> None:
    assert build_parser().parse_args([*COMMANDS[command], "--size", str(value)]).size == value


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_the_range(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    assert "an even number from 128 to 1024" in " ".join(capsys.readouterr().out.split())


def test_the_range_is_the_avatar_preparations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (avatar_module.MIN_SIZE, avatar_module.MAX_SIZE) == (128, 1024)
    portrait = Path(avatar_module.__file__).parent.parent / "assets" / "default_portrait.png"
    assert main(["avatar", "add", str(portrait), "--size", "128", "--store", str(tmp_path)]) == 0
    aid = capsys.readouterr().out.strip()
    assert main(["avatar", "show", aid, "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 128
