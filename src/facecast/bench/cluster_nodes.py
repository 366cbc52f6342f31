"""`facecast bench cluster_nodes`: a second Ray node joins a running cluster on this machine, sessions spread
across both nodes, then the second node is killed: how soon the joined node takes sessions, and what
happens to the killed node's sessions, with timings.

The two nodes (a head and a second node, each a raylet of its own with 1 CPU) are started with Ray's
`ray.cluster_utils.Cluster`, Ray's documented way to run several nodes on one machine: `ray start
--address` refuses a second node when the cluster is kept on loopback (Ray's multi-node check), and
without that it would advertise this machine's network address. `facecast serve --cluster HOST:PORT` (a
child process) joins the head alone; the second node joins while it runs, and the time until the front
door has a worker up on it is recorded. Each session gets an aiortc viewer
and an event listener; the second node is then killed without warning (its raylet and workers), and the
bench records when its sessions' error events arrive and when they read `failed`, and the frame rate
the surviving sessions' viewers keep. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from facecast.bench.live_capacity import _free_port, _wait_up
from facecast.server.ray_connect import LOCAL_RAY_ENV


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cluster_nodes", help="two Ray nodes here; kill one: its sessions, with timings")
    parser.add_argument("--sessions", type=int, default=2, help="sessions, spread over the two nodes")
    parser.add_argument("--size", type=int, default=256)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        result = asyncio.run(measure(args, cluster))
    finally:
        cluster.shutdown()
    print(json.dumps(result))
    return 0


async def measure(args: argparse.Namespace, cluster: Any) -> dict[str, Any]:
    from facecast_client import FacecastClient

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "facecast", "serve", "--port", str(port), "--home", tempfile.mkdtemp(prefix="facecast-bench-"),
        "--ice-host", "127.0.0.1", "--size", str(args.size), "--cluster", cluster.address,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = FacecastClient(url)
    viewers: dict[str, Any] = {}
    listeners: list[asyncio.Task[None]] = []
    errors: dict[str, float] = {}
    try:
        await _wait_up(url, proc)
        joined = time.monotonic()
        second = cluster.add_node(num_cpus=1)  # Ray's node setup wants the main thread: the loop waits
        while len([w for w in (await api.call("GET", "/v1/cluster"))["workers"] if w["state"] == "up"]) < 2:
            if time.monotonic() - joined > 60:
                raise SystemExit("the joined node got no worker within 60 s")
            await asyncio.sleep(0.1)
        join_s = time.monotonic() - joined
        print(f"a second node joined: a worker up on it {join_s:.1f} s after `add_node` began", flush=True)
        workers = (await api.call("GET", "/v1/cluster"))["workers"]
        node_of = {w["name"]: w["node"] for w in workers}
        sessions = [await api.create_session() for _ in range(args.sessions)]
        for s in sessions:
            viewers[s["id"]] = await api.watch(s["id"])
            listeners.append(asyncio.create_task(_listen(api, s["id"], errors)))
        await asyncio.sleep(3.0)
        placed = {s["id"]: node_of[s["worker"]] for s in sessions}
        doomed = [sid for sid, node in placed.items() if node == second.node_id]
        print(f"{len(workers)} workers on {len(set(node_of.values()))} nodes; sessions per node: "
              f"{ {n[:8]: list(placed.values()).count(n) for n in set(placed.values())} }", flush=True)  # fmt: skip
        counts = {sid: v.counts["video"] for sid, v in viewers.items()}
        killed = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: cluster.remove_node(second, allow_graceful=False)
        )
        failed_at: dict[str, float] = {}
        while time.monotonic() - killed < 10 and len(failed_at) < len(doomed):
            for sid in doomed:
                if sid not in failed_at and (await api.get_session(sid))["state"] == "failed":
                    failed_at[sid] = time.monotonic() - killed
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - killed)))
        wall = time.monotonic() - killed
        fps = {sid: round((viewers[sid].counts["video"] - counts[sid]) / wall, 1) for sid in viewers}
        cluster_after = await api.call("GET", "/v1/cluster")
    finally:
        for task in listeners:
            task.cancel()
        for viewer in viewers.values():
            await viewer.close()
        await api.close()
        proc.terminate()
        proc.wait(30)
    result: dict[str, Any] = {
        "bench": "cluster_nodes",
        "joined_node_worker_up_s": round(join_s, 2),
        "sessions": len(placed),
        "on_killed_node": len(doomed),
        "error_event_after_s": {sid[:8]: round(errors[sid] - killed, 3) for sid in doomed if sid in errors},
        "failed_after_s": {sid[:8]: round(t, 3) for sid, t in failed_at.items()},
        "viewer_fps_after_kill": {sid[:8]: fps[sid] for sid in viewers},
        "workers_after": {w["name"]: w["state"] for w in cluster_after["workers"]},
    }
    for sid in placed:
        fate = (
            f"error event after {result['error_event_after_s'].get(sid[:8], 'none')} s, failed after "
            f"{result['failed_after_s'].get(sid[:8], 'never')} s"
            if sid in doomed
            else "survivor"
        )
        print(f"session {sid[:8]} ({'killed node' if sid in doomed else 'head node'}): {fate}; "
              f"viewer {fps[sid]} fps over the {wall:.1f} s after the kill")  # fmt: skip
    return result


async def _listen(api: Any, sid: str, errors: dict[str, float]) -> None:
    async for event in api.events(sid):
        if event["type"] == "error" and sid not in errors:
            errors[sid] = time.monotonic()
