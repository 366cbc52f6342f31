"""Secrets in the configuration (issue 12): unusable API tokens are refused at start, and the loopback
check that decides whether a server may run without one goes by address, not by how a name looks."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from facecast.config import ConfigError, Settings, load_settings
from facecast.server.app import create_app
from facecast.server.auth import is_loopback


def config_file(tmp_path: Path, server_yaml: str) -> Path:
    path = tmp_path / "facecast.yaml"
    path.write_text("server:\n" + server_yaml)
    return path


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACECAST_API_TOKEN", raising=False)


@pytest.mark.parametrize(
    ("line", "says"),
    [('  api_token: ""\n', "empty"), ("  api_token: '   '\n", "empty"), ("  api_token: 12345\n", "string")],
)
def test_unusable_token_in_the_file_is_refused(tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(config_file(tmp_path, line))


def test_a_bad_file_token_is_refused_even_when_the_environment_sets_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACECAST_API_TOKEN", "from-env")
    with pytest.raises(ConfigError, match="empty"):
        load_settings(config_file(tmp_path, '  api_token: ""\n'))


def test_empty_environment_token_means_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECAST_API_TOKEN", "")
    assert load_settings().server.api_token is None
    assert load_settings(config_file(tmp_path, "  api_token: from-file\n")).server.api_token == "from-file"
    monkeypatch.setenv("FACECAST_API_TOKEN", "from-env")
    assert load_settings().server.api_token == "from-env"


@pytest.mark.parametrize("token", ["", 12345])
def test_unusable_token_set_in_code_stops_the_app(tmp_path: Path, token: Any) -> None:
    """Settings built in code skip load_settings: the app refuses them before it serves anything."""
    settings = Settings(home=tmp_path)
    settings.server.api_token = token
    with pytest.raises(ConfigError, match="server.api_token"):
        create_app(settings)


def test_webrtc_limits_are_checked(tmp_path: Path) -> None:
    settings = load_settings(config_file(tmp_path, "  max_peers_per_session: 4\n  offer_timeout_s: 2.5\n"))
    assert (settings.server.max_peers_per_session, settings.server.offer_timeout_s) == (4, 2.5)
    with pytest.raises(ConfigError, match="max_peers_per_session"):
        load_settings(config_file(tmp_path, "  max_peers_per_session: 0\n"))
    with pytest.raises(ConfigError, match="offer_timeout_s"):
        load_settings(config_file(tmp_path, "  offer_timeout_s: soon\n"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),  # a documentation address (RFC 5737)
        ("", False),
    ],
)
def test_loopback_by_address(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Names resolve only to `answers` (no DNS in tests); any other name does not resolve."""

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_is_loopback_only_if_every_address_is(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(
        monkeypatch,
        {
            "127.0.0.1.attacker.example": ["203.0.113.7"],  # looks like loopback, points elsewhere
            "localhost": ["127.0.0.1", "::1"],
            "half.example": ["127.0.0.1", "198.51.100.2"],
        },
    )
    assert not is_loopback("127.0.0.1.attacker.example")
    assert is_loopback("localhost")
    assert not is_loopback("half.example")
    assert not is_loopback("127.0.0.1.unresolvable.example")
