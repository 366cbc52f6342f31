"""Face detection prints no MediaPipe / TF Lite lines on stderr; aioice's per-connection INFO stays out of
the log unless --verbose."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import facecast
from facecast.__main__ import configure_logging
from facecast.models.face import landmarks

PORTRAIT = Path(facecast.__file__).parent / "assets" / "default_portrait.png"
NATIVE_LINE = re.compile(r"TensorFlow Lite|XNNPACK|absl::|^[IWE]\d{4} .*\.cc:\d+\]", re.M)


def test_avatar_add_prints_no_native_log_lines(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facecast", "avatar", "add", str(PORTRAIT), "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 16  # the avatar id: the face was really detected
    assert not NATIVE_LINE.search(done.stderr), done.stderr


def test_the_filter_passes_other_lines_on(capfd: pytest.CaptureFixture[str]) -> None:
    with landmarks.native_logs_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(
            2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        )
        os.write(2, b"W0000 00:00:1795966863.666908   19026 inference_feedback_manager.cc:114] Feedback\n")
        os.write(2, b"another thread's line\n")
        os.write(2, b"E0000 00:00:1795966863.7   19026 graph.cc:10] a real error\n")
    assert (
        capfd.readouterr().err
        == "another thread's line\nE0000 00:00:1795966863.7   19026 graph.cc:10] a real error\n"
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in ("aioice", "aiortc")}
    quiet = landmarks.quiet_native_logs
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    landmarks.quiet_native_logs = quiet


def test_aioice_info_only_when_verbose(restore_logging: None) -> None:
    configure_logging(verbose=False)
    assert not logging.getLogger("aioice.ice").isEnabledFor(logging.INFO)
    assert not logging.getLogger("aiortc.rtcpeerconnection").isEnabledFor(logging.INFO)
    assert logging.getLogger("aioice.ice").isEnabledFor(logging.WARNING)
    assert landmarks.quiet_native_logs
    configure_logging(verbose=True)
    assert logging.getLogger("aioice").level == logging.NOTSET
    assert not landmarks.quiet_native_logs
