from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.models.audio.decode import decode_audio
from facecast.models.avatar import Avatar, AvatarStore


@pytest.fixture(scope="session")
def avatar(tmp_path_factory: pytest.TempPathFactory) -> Avatar:
    return AvatarStore(tmp_path_factory.mktemp("avatars")).default()


@pytest.fixture(scope="session")
def speech(media_dir: Path) -> np.ndarray:
    return decode_audio(media_dir / "speech_1.wav")
