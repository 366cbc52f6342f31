"""`facecast render --push URL`: an offline render streamed in real time to a real RTMP server (nginx-rtmp
on loopback), played back with PyAV and measured for lip sync; its pacing on a fake clock; its refusals."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from facecast.bench.lipsync import measure_lipsync
from facecast.bench.loopback import free_port
from facecast.bench.rtmp_server import NginxRtmp, nginx_rtmp_available, pull
from facecast.cli.render_push import push_render
from facecast.models.avatar import Avatar
from facecast.models.render.engine import WarpEngine


def facecast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(nginx_rtmp_available() is not None, reason=str(nginx_rtmp_available()))
def test_a_render_pushed_to_rtmp_plays_back_lip_synced(tmp_path: Path, media_dir: Path) -> None:
    with NginxRtmp(tmp_path / "nginx") as rtmp, ThreadPoolExecutor(1) as pool:
        pulled = pool.submit(pull, rtmp.url(), tmp_path / "pulled.flv", 60.0)  # until the push ends
        done = facecast(
            "render", "--audio", str(media_dir / "speech_1.wav"), "--push", rtmp.publish_url,
            "--size", "256", "--quiet", "--store", str(tmp_path / "store"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"to rtmp://127.0.0.1:{rtmp.port}/live/…" in done.stdout and rtmp.stream_key not in done.stdout
        flv = pulled.result(timeout=30)
    with av.open(str(flv)) as played:
        assert {s.codec_context.name for s in played.streams} == {"aac", "h264"}
        frames = sum(1 for _ in played.decode(video=0))
    with av.open(str(media_dir / "speech_1.wav")) as speech:
        seconds = float(speech.duration or 0) / av.time_base
    assert abs(frames - seconds * 30) <= 3  # every frame of the render, once
    result = measure_lipsync(flv)
    assert result.best_corr >= 0.7 and result.best_lag is not None and abs(result.best_lag) <= 1, result


def test_frames_leave_in_real_time_on_the_clock(
    avatar: Avatar, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pacing on a fake clock: frame k leaves at start + k / fps, however fast the engine renders."""
    sent: list[tuple[int, float]] = []
    now = [100.0]

    class Recorder:
        connected = type("Done", (), {"result": staticmethod(lambda timeout: None)})()
        link_state, error, frames_sent = "live", None, 0

        def __init__(self, url: str) -> None:
            pass

        def start(self, host: object) -> None:
            pass

        def on_frame(self, frame: object) -> None:
            sent.append((frame.index, now[0]))  # type: ignore[attr-defined]
            self.frames_sent += 1

        def stop(self) -> None:
            pass

        def finish(self) -> None:
            pass

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr("facecast.cli.render_push.PushOutput", Recorder)
    engine = WarpEngine(avatar, size=128)
    count = push_render(engine, speech[:16000], "rtmp://h/live/k", clock=lambda: now[0], sleep=sleep)
    assert count == len(sent) == 30
    assert all(abs(t - (100.0 + k / 30)) < 1e-9 for k, t in sent)


def test_a_push_that_cannot_work_is_one_line(tmp_path: Path, media_dir: Path) -> None:
    for url, words in (
        ("http://127.0.0.1/live/key", "use rtmp://, rtmps:// or srt://"),
        (f"rtmp://127.0.0.1:{free_port()}/live/key", "nothing accepts connections"),
    ):
        done = facecast(
            "render", "--audio", str(media_dir / "goforward.wav"), "--push", url, "--size", "128", "--quiet"
        )
        assert done.returncode != 0 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
