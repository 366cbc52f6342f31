"""Reaching a Ray cluster for the front door (server/cluster.py): what `--cluster` names, and joining it.

--cluster local[:N]     a Ray instance started here, on loopback, with N workers (default 2)
--cluster auto          the Ray cluster this machine belongs to (RAY_ADDRESS or `ray start`)
--cluster HOST:PORT     the cluster whose head (GCS) listens there (`ray start --head --port PORT`)
--cluster ray://HOST:PORT   the same through the head's Ray Client server (port 10001 by default): for a
                        front door that is not on a node of the cluster (pip package ray[client])
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

LOCAL_WORKERS = 2
CLIENT_ATTEMPTS = 3  # ray:// (Ray Client): tries to join before giving up
CLIENT_RETRY_S = 2.0
# A local cluster stays on loopback: Ray would otherwise advertise (and connect to) this machine's
# network address. Token authentication keeps other local users' drivers out.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's switch for "this node is 127.0.0.1"
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",  # never phone home
}


class ClusterError(Exception):
    """The cluster cannot be used (one sentence)."""


@dataclass(frozen=True)
class ClusterSpec:
    mode: str  # "local" | "auto" | "address" | "client"
    workers: int = LOCAL_WORKERS  # local mode: workers on this machine
    address: str | None = None

    @staticmethod
    def parse(text: str) -> ClusterSpec:
        text = text.strip()
        if text == "auto":
            return ClusterSpec("auto")
        if match := re.fullmatch(r"local(?::(\d+))?", text):
            workers = int(match.group(1) or LOCAL_WORKERS)
            if not 1 <= workers <= 64:
                raise ClusterError(f"local:{workers}: give between 1 and 64 workers")
            return ClusterSpec("local", workers)
        address = text.removeprefix("ray://")
        if re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", address):
            return ClusterSpec("client" if text.startswith("ray://") else "address", address=address)
        raise ClusterError(
            f"unknown --cluster {text!r}: use local[:N], auto, HOST:PORT of a Ray head or ray://HOST:PORT"
        )


def connect_ray(spec: ClusterSpec) -> Any:
    """Joins (or, local, starts) the cluster; the `ray` module, connected. ClusterError in one sentence."""
    if spec.mode == "local":
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray  # after the environment above: Ray reads it at import

    if spec.mode in ("address", "client"):
        assert spec.address is not None
        _probe(spec.address)
        target: str | None = spec.address if spec.mode == "address" else f"ray://{spec.address}"
    else:
        # "local": always a new instance here, never one already running on this machine (Ray's default).
        target = "local" if spec.mode == "local" else "auto"
    # Ray Client takes none of the options of a driver on a node (its server runs the driver there).
    options: dict[str, Any] = (
        {} if spec.mode == "client" else {"include_dashboard": False, "configure_logging": False}
    )
    # A Ray Client server starts a process per client, which now and then dies at birth (seen with a
    # head a few seconds old: "Initialization failure from server", empty logs); the next try works.
    attempts = CLIENT_ATTEMPTS if spec.mode == "client" else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                address=target,
                num_cpus=(os.cpu_count() or 1) if spec.mode == "local" else None,
                log_to_driver=False,
                **options,
            )
            break
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if attempt == attempts:
                raise _join_failed(spec, exc) from None
            ray.shutdown()  # what the failed try left of its client
            time.sleep(CLIENT_RETRY_S)
    return ray


def _join_failed(spec: ClusterSpec, exc: BaseException) -> ClusterError:
    if spec.mode == "local":
        return ClusterError(f"cannot start a local Ray instance ({first_line(exc)})")
    where = spec.address or "this machine (auto)"
    return ClusterError(f"cannot join the Ray cluster at {where} ({first_line(exc)})")


def _probe(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
            f"`ray start --head --port {port}` or use --cluster local"
        ) from None


def first_line(exc: BaseException) -> str:
    """An exception's text as one bounded line."""
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
