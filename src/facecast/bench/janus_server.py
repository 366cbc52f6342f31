"""A Janus WebRTC server for tests and benchmarks: Debian's `janus` (1.1) on loopback only.

`JanusServer(workdir)` writes a minimal config folder (janus.jcfg: the Streaming and VideoRoom plugins
and the HTTP transport only, every other plugin, transport, logger and event handler disabled; the HTTP
API on a free 127.0.0.1 port; the Streaming plugin with no static mountpoints, the VideoRoom with no
static rooms), runs `janus -F <folder>` in the foreground and stops it by pid (`kill()`: SIGKILL, for
tests of a Janus that vanishes).

ICE on loopback: Janus never gathers candidates on a loopback interface (src/ice.c skips IFF_LOOPBACK,
and libnice's own fallback leaves loopback out too), so on its own it would offer this machine's network
addresses to viewers. Here a tiny LD_PRELOAD library (compiled with the system's cc into the work folder)
changes what getifaddrs() shows Janus: 127.0.0.1 as an ordinary interface and every other address down.
Janus then binds and offers 127.0.0.1 host candidates only, and nothing of it listens beyond loopback
(checked by the tests; a VideoRoom remote publisher's RTP and RTCP ports are bound to the `iface` facecast
asks for, 127.0.0.1). A real deployment needs no such thing: Janus offers its real interfaces there
(configs/janus/ is a commented sample).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self

from facecast.bench.loopback import free_port, wait_listening

JANUS_LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
START_TIMEOUT_S = 10.0
ICE_PORT_RANGE = "20000-29999"  # Janus's ports towards viewers
MOUNTPOINT_PORT_RANGE = "30000-39999"  # the Streaming plugin's, for mountpoints created with port 0
PLUGINS = ("libjanus_streaming.so", "libjanus_videoroom.so")  # broadcast targets (server/api_broadcast.py)

# getifaddrs() as Janus's ICE gathering should see it (see the module docstring). The list itself is left
# as it is (freeifaddrs frees it as one block); only the flags change.
LOOPBACK_ICE_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
int getifaddrs(struct ifaddrs **out) {
    int (*real)(struct ifaddrs **) = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(out);
    if (rc != 0) return rc;
    for (struct ifaddrs *ifa = *out; ifa; ifa = ifa->ifa_next) {
        int v4_loopback = ifa->ifa_addr && ifa->ifa_addr->sa_family == AF_INET &&
            ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
        if (v4_loopback) ifa->ifa_flags = (ifa->ifa_flags & ~IFF_LOOPBACK) | IFF_UP | IFF_RUNNING;
        else ifa->ifa_flags &= ~(IFF_UP | IFF_RUNNING);
    }
    return 0;
}
"""


def janus_available() -> str | None:
    """None when Janus and what JanusServer needs are installed, else what is missing (one sentence)."""
    if shutil.which("janus") is None:
        return "Janus is not installed (apt-get install janus)"
    for lib in (*(f"plugins/{p}" for p in PLUGINS), "transports/libjanus_http.so"):
        if not (JANUS_LIBDIR / lib).exists():
            return f"Janus's {lib} is missing from {JANUS_LIBDIR} (apt-get install janus)"
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build the loopback-ICE shim for Janus (apt-get install gcc)"
    return None


def _names(folder: str, *keep: str) -> str:
    """Every library in Janus's `folder` but those in `keep`, for a `disable` list."""
    found = sorted(p.name for p in (JANUS_LIBDIR / folder).glob("libjanus_*.so"))
    return ",".join(n for n in found if n not in keep)


class JanusServer:
    """Janus on 127.0.0.1: HTTP API at `url`, the Streaming and VideoRoom plugins, ICE on loopback."""

    def __init__(self, workdir: Path, *, session_timeout_s: int = 60, debug_level: int = 3) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.session_timeout_s = session_timeout_s
        self.debug_level = debug_level
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _config(self) -> Path:
        conf = self.workdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "janus.jcfg").write_text(
            "general: {\n"
            f'  configs_folder = "{conf}"\n'
            f'  plugins_folder = "{JANUS_LIBDIR / "plugins"}"\n'
            f'  transports_folder = "{JANUS_LIBDIR / "transports"}"\n'
            f'  events_folder = "{JANUS_LIBDIR / "events"}"\n'
            f'  loggers_folder = "{JANUS_LIBDIR / "loggers"}"\n'
            f"  debug_level = {self.debug_level}\n"
            '  interface = "127.0.0.1"\n'  # the address in the SDP's c= lines
            f"  session_timeout = {self.session_timeout_s}\n"
            "}\n"
            f'media: {{\n  rtp_port_range = "{ICE_PORT_RANGE}"\n}}\n'
            'nat: {\n  ice_enforce_list = "127.0.0.1"\n  ignore_mdns = true\n}\n'
            f'plugins: {{\n  disable = "{_names("plugins", *PLUGINS)}"\n}}\n'
            f'transports: {{\n  disable = "{_names("transports", "libjanus_http.so")}"\n}}\n'
            f'loggers: {{\n  disable = "{_names("loggers")}"\n}}\n'
            f'events: {{\n  broadcast = false\n  disable = "{_names("events")}"\n}}\n'
        )
        (conf / "janus.transport.http.jcfg").write_text(
            "general: {\n"
            '  json = "compact"\n  base_path = "/janus"\n  http = true\n'
            f'  port = {self.http_port}\n  ip = "127.0.0.1"\n  https = false\n'
            "}\n"
            "admin: {\n  admin_http = false\n  admin_https = false\n}\n"
        )
        (conf / "janus.plugin.streaming.jcfg").write_text(
            f'general: {{\n  rtp_port_range = "{MOUNTPOINT_PORT_RANGE}"\n}}\n'  # no static mountpoints
        )
        # No static rooms: facecast creates a private one per broadcast through the API.
        (conf / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        return conf

    def _shim(self) -> Path:
        lib = self.workdir / "loopback_ice.so"
        if not lib.exists():
            source = self.workdir / "loopback_ice.c"
            source.write_text(LOOPBACK_ICE_C)
            subprocess.run(
                ["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(source), "-ldl"],
                check=True,
                capture_output=True,
            )
        return lib

    def start(self) -> None:
        problem = janus_available()
        if problem:
            raise RuntimeError(problem)
        conf = self._config()
        env = {**os.environ, "LD_PRELOAD": str(self._shim())}
        log = (self.workdir / "janus.log").open("ab")
        self._process = subprocess.Popen(
            ["janus", "-F", str(conf), "-o"],  # -o: no colours in the log
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        try:
            wait_listening("janus", self._process, self.http_port, self.log_tail, START_TIMEOUT_S)
        except RuntimeError:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: Janus vanishes without a word (what a crash looks like to its clients)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=5)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def listening(self) -> set[tuple[str, str, int]]:
        """(protocol, local address, port) of every socket Janus has open (TCP listening ones and UDP),
        from /proc: what the tests check stays on loopback."""
        if self.pid is None:
            return set()
        inodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        found = set()
        for proto in ("tcp", "udp", "tcp6", "udp6"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.pid}/net/{proto}").read_text().splitlines()[1:]:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if inode in inodes and (proto.startswith("udp") or state == "0A"):  # 0A: LISTEN
                        address, port = local.split(":")
                        found.add((proto, _address(address), int(port, 16)))
        return found

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.workdir / "janus.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no janus log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _address(hex_address: str) -> str:
    """An address as /proc/net/{tcp,udp}[6] writes it (little-endian 32-bit words, in hex)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))
