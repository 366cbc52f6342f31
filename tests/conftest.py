"""Shared test fixtures: paths to ../shared (test data only; the product never reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facecast.models.audio.decode import decode_audio
from facecast.models.avatar import Avatar, AvatarStore

pytest_plugins = ["live_server_fixtures"]  # real-server fixtures shared by tests/server and tests/e2e

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEDIA = SHARED / "media"
FIXTURE_A = SHARED / "aniportrait" / "fixtures" / "A"


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """2 shared cores: OpenMP spinning across threads makes tiny convolutions ~6x slower than 1 thread."""
    import torch  # only the tests that ask for it pay for the import

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"test data folder {SHARED} is missing (it sits beside the repository)")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def fixture_a(shared_dir: Path) -> Path:
    return shared_dir / "aniportrait" / "fixtures" / "A"


@pytest.fixture(scope="session")
def avatar(tmp_path_factory: pytest.TempPathFactory) -> Avatar:
    """The bundled default portrait, prepared once (tests of sessions and outputs)."""
    return AvatarStore(tmp_path_factory.mktemp("avatars")).default()


@pytest.fixture(scope="session")
def speech(media_dir: Path) -> np.ndarray:
    return decode_audio(media_dir / "speech_1.wav")
