"""An RTMP server for tests and benchmarks: Debian's nginx with its RTMP module, on a loopback port.

`NginxRtmp` writes a config into a work folder, runs nginx in the foreground (no master process, no
daemon, pid known) and stops it by pid; `stop()` then `start()` brings it back on the same port, which
is how a test drops and restores a push. A publish is accepted only with `stream_key` (or, for several
streams at once, `stream_key-ANYTHING`): nginx-rtmp asks an HTTP endpoint (`on_publish`) served here, as
YouTube or Twitch check their keys.

`pull(url, out, seconds)` copies what a player would receive into a local FLV file (no re-encoding),
for the project's own measures (bench lipsync) to read.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs

import av

from facecast.bench.loopback import free_port, wait_listening

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
START_TIMEOUT_S = 10.0


def nginx_rtmp_available() -> str | None:
    """None when nginx and its RTMP module are installed, else what is missing (one sentence)."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx libnginx-mod-rtmp)"
    if not RTMP_MODULE.exists():
        return f"nginx's RTMP module is not installed ({RTMP_MODULE}; apt-get install libnginx-mod-rtmp)"
    return None


class _KeyCheck(BaseHTTPRequestHandler):
    """nginx-rtmp's on_publish: POST name=<stream key>&...; 2xx accepts, anything else refuses."""

    key = ""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0]
        self.send_response(204 if name == self.key or name.startswith(self.key + "-") else 403)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's signature)
        pass


class NginxRtmp:
    """nginx-rtmp on 127.0.0.1: publish to `publish_url`, play from `play_url` (the same address)."""

    def __init__(self, workdir: Path, stream_key: str = "facecast-test-key") -> None:
        self.workdir = workdir
        self.stream_key = stream_key
        self.port = free_port()
        self._auth = ThreadingHTTPServer(
            ("127.0.0.1", 0), type("KeyCheck", (_KeyCheck,), {"key": stream_key})
        )
        self._auth_thread = threading.Thread(target=self._auth.serve_forever, daemon=True)
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, key: str | None = None) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{self.stream_key if key is None else key}"

    @property
    def publish_url(self) -> str:
        return self.url()

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            f"load_module {RTMP_MODULE};\n"
            "daemon off;\nmaster_process off;\n"
            f"pid {self.workdir / 'nginx.pid'};\n"
            f"error_log {self.workdir / 'error.log'} info;\n"
            "events { worker_connections 256; }\n"
            "rtmp {\n  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            "    application live {\n      live on;\n      record off;\n"
            f"      on_publish http://127.0.0.1:{self._auth.server_address[1]}/publish;\n"
            "    }\n  }\n}\n"
        )
        return conf

    def start(self) -> None:
        problem = nginx_rtmp_available()
        if problem:
            raise RuntimeError(problem)
        if not self._auth_thread.is_alive():
            self._auth_thread.start()
        conf = self._config()
        log = (self.workdir / "stderr.log").open("ab")
        self._process = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.workdir), "-e", str(self.workdir / "error.log")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_listening("nginx-rtmp", self._process, self.port, self.log_tail, START_TIMEOUT_S)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # fast shutdown: open connections are closed
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.workdir / "error.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no nginx log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._auth.shutdown()
        self._auth.server_close()


def pull(url: str, out: Path, seconds: float, *, open_timeout_s: float = 10.0) -> Path:
    """Plays `url` for `seconds` of stream time from its first packet (or until it ends) into the FLV
    `out`, packets as they are."""
    source = av.open(url, timeout=(open_timeout_s, 5.0))
    try:
        with av.open(str(out), "w", format="flv") as sink:
            streams = [s for s in source.streams if s.type in ("audio", "video")]
            mapping = {s.index: sink.add_stream_from_template(s) for s in streams}
            first: float | None = None
            try:
                for packet in source.demux(*streams):
                    if packet.dts is None or packet.pts is None or packet.time_base is None:
                        continue
                    at = float(packet.pts * packet.time_base)
                    first = at if first is None else first
                    if at - first > seconds:
                        break
                    packet.stream = mapping[packet.stream.index]
                    sink.mux(packet)
            except av.error.ExitError:  # the read timeout: the publisher stopped
                pass
    finally:
        source.close()
    return out
