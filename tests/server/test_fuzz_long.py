"""The fuzzers of test_fuzz_api.py and test_fuzz_inputs.py at a case count too large for the default suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LONG_EXAMPLES = 300  # per operation and generation mode (schemathesis), per input kind (hypothesis)


@pytest.mark.slow
def test_the_long_fuzz_run_finds_nothing() -> None:
    here = Path(__file__).parent
    env = dict(os.environ, FACECAST_FUZZ_EXAMPLES=str(LONG_EXAMPLES))
    files = [str(here / "test_fuzz_api.py"), str(here / "test_fuzz_inputs.py")]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
