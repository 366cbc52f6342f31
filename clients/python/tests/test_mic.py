"""`facecast-client mic`, run as a subprocess against a real server with a real sound server: PulseAudio in
user mode, private to the test, with two null sinks. `paplay` into `facecast_mic` is what the microphone
hears (its monitor is the default source); `--play` goes to `facecast_speaker` (the default sink), whose
monitor `parecord` listens to. PortAudio reaches it through ALSA's `pulse` device (the ALSA pulse plugin).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from facecast_client import FacecastClient, NotFound
from mic_support import CLI, Cli, Pulse, api, play_into_mic, run_cli, view_url

from conftest import ServerProcess, free_port, measure_lipsync, read_wav


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    for tool in ("pulseaudio", "pactl", "paplay", "parecord"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed (Debian: apt-get install pulseaudio pulseaudio-utils)")
    if not CLI.exists():
        pytest.fail(
            f"{CLI} is missing: install the client package (pip install -e 'clients/python[mic,test]')"
        )
    runtime = tmp_path_factory.mktemp("pulse")
    scratch = None
    if len(str(runtime / "pulse" / "native")) > 100:  # a unix socket's path has a ~108 byte limit
        scratch = Path(tempfile.mkdtemp(prefix="fcpa-"))
        runtime = scratch
    server = Pulse(runtime)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import sounddevice as sd; print(sd.query_devices('pulse', 'input')['name'])"],
            env=server.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if probe.returncode != 0:
            pytest.skip(
                "PortAudio has no `pulse` device (the ALSA pulse plugin, Debian libasound2-plugins, is "
                f"missing?): {probe.stderr.strip().splitlines()[-1:]}"
            )
        yield server
    finally:
        server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def test_mic_speech_drives_the_avatar(pulse: Pulse, server_url: str, media_dir: Path, tmp_path: Path) -> None:
    """Speech heard by the microphone makes the avatar speak in sync; Ctrl-C ends it all, exit 0."""
    started = time.monotonic()
    cli = Cli(["mic", "--server", server_url, "--input-device", "pulse", "--seconds", "120"], pulse.env)
    try:
        base, sid = view_url(cli)
        assert base == server_url
        api(server_url, lambda fc: fc.recording(sid, "start"))
        cli.wait_line(lambda line: line.startswith("speaking_started"))  # the microphone is streaming
        play_into_mic(pulse, media_dir / "speech_1.wav")
        time.sleep(1.0)  # the last words' way through the server (latency: a few hundred ms)
        video = tmp_path / "mic.mp4"

        async def stop_and_download(fc: FacecastClient) -> None:
            await fc.recording(sid, "stop")
            await fc.download_recording(sid, video)

        api(server_url, stop_and_download)
        cli.interrupt()
        assert cli.finish() == 0, cli.report()
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
    assert not cli.stderr, cli.report()
    assert any(line.startswith("speaking_started utterance=") for line in cli.stdout), cli.report()
    with pytest.raises(NotFound):  # the CLI deleted its session on the way out
        api(server_url, lambda fc: fc.get_session(sid))

    measured = measure_lipsync(video)
    print(f"mic: {time.monotonic() - started:.1f} s, lipsync {measured}")
    assert measured["best_corr"] is not None and measured["best_corr"] >= 0.6, measured


def envelope(samples: np.ndarray, rate: int, window_s: float = 0.02) -> np.ndarray:
    n = int(rate * window_s)
    frames = samples[: samples.size // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1))


def best_envelope_corr(heard: np.ndarray, said: np.ndarray) -> float:
    """The highest correlation of the said envelope with any same-length stretch of the heard one."""
    best = -1.0
    for lag in range(0, heard.size - said.size + 1):
        part = heard[lag : lag + said.size]
        if part.std() > 0 and said.std() > 0:
            best = max(best, float(np.corrcoef(part, said)[0, 1]))
    return best


def wait_until_played(raw: Path, timeout: float = 30.0) -> None:
    """Until what parecord keeps writing had sound, then half a second of silence (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = raw.read_bytes()
        loud = np.flatnonzero(
            envelope(np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"), 16000, 0.1) > 200
        )
        if loud.size and (len(data) // 2) / 1600 - (loud[-1] + 1) >= 5:
            return
        time.sleep(0.1)


def test_mic_play_outputs_the_avatars_voice(
    pulse: Pulse, server_url: str, media_dir: Path, tmp_path: Path
) -> None:
    """--play: the avatar's voice (its frames' audio) comes out of the output device."""
    raw = tmp_path / "speaker.raw"
    args = ["mic", "--server", server_url, "--input-device", "pulse", "--play", "--output-device", "pulse"]
    cli: Cli | None = None
    with raw.open("wb") as sink:
        recorder = subprocess.Popen(
            ["parecord", "-d", "facecast_speaker.monitor", "--raw", "--format=s16le", "--rate=16000",
             "--channels=1"],
            env=pulse.env, stdout=sink, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30  # parecord can be slow to start: the speech must not precede it
            while raw.stat().st_size < 3200 and recorder.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert raw.stat().st_size >= 3200, "parecord does not record"
            cli = Cli([*args, "--seconds", "120"], pulse.env)
            view_url(cli)
            cli.wait_line(lambda line: line.startswith("speaking_started"))
            play_into_mic(pulse, media_dir / "goforward.wav")
            wait_until_played(raw)  # through the server, the frames socket and the jitter buffer
            cli.interrupt()
            assert cli.finish() == 0, cli.report()
        finally:
            if cli is not None and cli.proc.poll() is None:
                cli.proc.kill()
            recorder.send_signal(signal.SIGINT)
            try:
                recorder.wait(10)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
    assert cli is not None and not cli.stderr, cli.report() if cli else ""
    heard = np.frombuffer(raw.read_bytes()[: raw.stat().st_size // 2 * 2], dtype="<i2")
    said, rate = read_wav(media_dir / "goforward.wav")
    assert rate == 16000
    assert heard.size > said.size, f"parecord captured {heard.size / 16000:.2f} s"
    corr = best_envelope_corr(envelope(heard, 16000), envelope(said, 16000))
    print(f"play: heard {heard.size / 16000:.1f} s, peak {np.abs(heard).max()}, envelope corr {corr:.3f}")
    assert np.abs(heard).max() > 1000, "nothing audible came out"
    assert corr >= 0.6, corr


# -- bad input: one sentence, an exit code, no traceback -----------------------------------------------


def assert_one_error(code: int, out: str, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_mic_bad_input(pulse: Pulse, server_url: str) -> None:
    env = pulse.env
    # nothing listens there
    line = assert_one_error(
        *run_cli(["mic", "--server", f"http://127.0.0.1:{free_port()}", "--seconds", "5"], env)
    )
    assert "no facecast server answered" in line
    # not a server URL at all
    line = assert_one_error(*run_cli(["mic", "--server", "127.0.0.1:8080", "--seconds", "5"], env))
    assert "http(s)://HOST[:PORT]" in line
    # an avatar the server does not have: the server's own sentence
    with pytest.raises(NotFound) as refused:
        api(server_url, lambda fc: fc.create_session(avatar="no-such-avatar"))
    line = assert_one_error(
        *run_cli(["mic", "--server", server_url, "--avatar", "no-such-avatar", "--seconds", "5"], env)
    )
    assert line == f"error: {refused.value.message}"
    # a microphone that is not there
    line = assert_one_error(
        *run_cli(["mic", "--server", server_url, "--input-device", "no-such-mic", "--seconds", "5"], env)
    )
    assert "no-such-mic" in line
    assert api(server_url, lambda fc: fc.list_sessions()) == [], "a failed start left a session behind"


def test_mic_refused_token_then_server_gone(pulse: Pulse, tmp_path: Path) -> None:
    """A server with an API token: a wrong one is refused (exit 2); with the right one, the server shutting
    down mid-session ends the CLI with exit 1 and the server's sentence."""
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(home, token="the-right-token")
    try:
        base = ["mic", "--server", server.url, "--input-device", "pulse"]
        line = assert_one_error(*run_cli([*base, "--token", "a-wrong-token", "--seconds", "5"], pulse.env))
        assert "token" in line.lower()
        cli = Cli([*base, "--token", "the-right-token", "--seconds", "120"], pulse.env)
        try:
            view_url(cli)
            cli.wait_line(lambda line: line.startswith("speaking_started"))
            server.stop()  # SIGTERM: the server closes its sessions' sockets, going away
            code = cli.finish()
        finally:
            if cli.proc.poll() is None:
                cli.proc.kill()
        line = assert_one_error(code, "\n".join(cli.stdout), "\n".join(cli.stderr), expected_code=1)
        assert "shutting down" in line or "went away" in line, line
    finally:
        server.stop()


def test_mic_ctrl_c_while_connecting(pulse: Pulse) -> None:
    """Ctrl-C while the server has not answered yet: exit 130 at once, quietly."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(60)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        cli = Cli(["mic", "--server", url, "--input-device", "pulse", "--seconds", "5"], pulse.env)
        try:
            connection, _ = listener.accept()  # the CLI is waiting for its first answer
            with connection:
                cli.interrupt()
                code = cli.finish(30)
        finally:
            if cli.proc.poll() is None:
                cli.proc.kill()
    assert code == 130, cli.report()
    assert not cli.stdout and not cli.stderr, cli.report()


# -- pieces ---------------------------------------------------------------------------------------------
