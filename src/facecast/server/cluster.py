"""The front door's view of a Ray cluster of engine workers (server/worker.py): starting workers on every
node, placing sessions, and noticing workers that die, stall or join (reaching the cluster:
server/ray_connect.py).

Workers: N on this machine for local:N; elsewhere, on each node, one per GPU for the AniPortrait engine
and one per CPU core for the warp engine. A node that joins later gets its workers within NODE_SCAN_S;
one that leaves takes its workers' sessions with it.

What happens to a worker's sessions when it dies (server.on_worker_loss: fail, the default; with
`recreate` each is created again, idle, on another worker under the same id and tokens, and the
streams that broke end with an event telling the client to reconnect) (SIGKILL, its node lost): the front door hears it at
once (a connection held to the worker process ends with it; Ray's own report follows: `wait_closed`
fails), marks each session failed with a one-sentence reason, and every event
stream or WebSocket relayed to it ends with an `error` event (server/proxy.py). Ray restarts the worker
process (up to MAX_RESTARTS times), which then takes new sessions. A worker that stops answering its load
poll is `unreachable`: given no new sessions until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from facecast.config import Settings
from facecast.server.admission import default_max_sessions
from facecast.server.errors import ApiError
from facecast.server.ray_connect import ClusterError, ClusterSpec, connect_ray, first_line

log = logging.getLogger(__name__)

LOAD_POLL_S = 1.0
LOAD_TIMEOUT_S = 2.0
NODE_SCAN_S = 2.0
MAX_RESTARTS = 3
START_TIMEOUT_S = 60.0
RETRY_AFTER_S = 5


@dataclass(eq=False)
class Worker:
    name: str
    actor: Any  # ray.actor.ActorHandle of EngineWorker
    node: str
    state: str = "starting"  # starting | up | unreachable | down
    url: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    failure: str | None = None
    restarts: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "node": self.node,
            "url": self.url,
            "pid": self.info.get("pid"),
            "resources": self.info.get("resources", {}),
            "sessions": sorted(self.sessions),
            "max_sessions": self.load.get("max_sessions"),
            "restarts": self.restarts,
            **({"failure": self.failure} if self.failure else {}),
        }


@dataclass(eq=False)
class PlacedSession:
    id: str
    worker: Worker
    token: str
    view_token: str
    request: dict[str, Any] = field(default_factory=dict)  # what created it (a recreate repeats it)
    failure: str | None = None  # why it failed (its worker died)
    moving: bool = False  # being recreated on another worker
    note: str | None = None  # what became of it when its worker died: for the streams that broke


class Cluster:
    """Engine workers on Ray, as the front door uses them (event loop, except `connect`)."""

    def __init__(self, settings: Settings, spec: ClusterSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.secret = secrets.token_urlsafe(24)  # the workers' API token: only the front door holds it
        self.workers: dict[str, Worker] = {}
        self.sessions: dict[str, PlacedSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[Worker, int] = {}  # sessions being created on each worker
        self._lost = asyncio.Condition()
        self._ray: Any = None
        self._counter = 0
        self._closing = False
        self._nodes: set[str] = set()  # nodes given their workers
        # Set by the front door: recreates a session on another worker (server.on_worker_loss: recreate).
        self.recreate: Callable[[PlacedSession], Awaitable[None]] | None = None

    # -- connecting (blocking: before the server starts) ---------------------------------------------
    def connect(self) -> None:
        """Joins or starts the Ray cluster; ClusterError in one sentence if it cannot."""
        self._ray = connect_ray(self.spec)

    # -- lifecycle (event loop) -----------------------------------------------------------------------
    async def start(self) -> None:
        """Starts the workers (local: N here; otherwise on every node) and the watchers."""
        await self._scan_nodes(first=True)
        if not self.workers:
            raise ClusterError("the Ray cluster has no node with the resources of an engine worker")
        self._spawn(self._poll_loads())
        if self.spec.mode != "local":
            self._spawn(self._scan_loop())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for worker in self.workers.values():
            if worker.state != "down":
                try:
                    await asyncio.wait_for(worker.actor.stop.remote(), 10)
                except Exception:  # it may be gone already; it is killed below either way
                    log.debug("worker %s did not stop cleanly", worker.name, exc_info=True)
            self._ray.kill(worker.actor, no_restart=True)
        self.workers.clear()
        self._ray.shutdown()  # local: stops the Ray instance started here; otherwise only disconnects

    # -- placement --------------------------------------------------------------------------------------
    def choose(self, avatar_id: str) -> Worker:
        """The worker for a new session of `avatar_id`: the least loaded (fewest sessions), and of those one that
        already holds the avatar (its prepared state is shared there); 503 with Retry-After when all are full."""
        room = [w for w in self.workers.values() if w.state == "up" and self._free(w) > 0]
        if not room:
            raise ApiError(
                503, "cluster_full", "every engine worker of the cluster is at capacity",
                {"Retry-After": str(RETRY_AFTER_S)},
            )  # fmt: skip
        return min(room, key=lambda w: (self._used(w), avatar_id not in w.load.get("avatars", [])))

    def _free(self, worker: Worker) -> int:
        return int(worker.load.get("max_sessions", 0)) - len(worker.sessions) - self._pending.get(worker, 0)

    def _used(self, worker: Worker) -> float:
        limit = max(1, int(worker.load.get("max_sessions", 1)))
        return (len(worker.sessions) + self._pending.get(worker, 0)) / limit

    def reserve(self, worker: Worker) -> None:
        self._pending[worker] = self._pending.get(worker, 0) + 1

    def release(self, worker: Worker) -> None:
        self._pending[worker] = max(0, self._pending.get(worker, 0) - 1)

    def placed(self, worker: Worker, info: dict[str, Any], request: dict[str, Any]) -> PlacedSession:
        session = self.sessions.get(info["id"])
        if session is None:
            session = PlacedSession(info["id"], worker, info["token"], info["view_token"], request)
            self.sessions[session.id] = session
        session.worker = worker  # a recreated session keeps its record, on its new worker
        worker.sessions.add(session.id)
        worker.load.setdefault("avatars", []).append(info.get("avatar"))
        return session

    def forget(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            session.worker.sessions.discard(sid)

    def session(self, sid: str) -> PlacedSession:
        try:
            return self.sessions[sid]
        except KeyError:
            raise ApiError(404, "session_not_found", f"no session '{sid[:64]}'") from None

    def session_tokens(self, sid: str) -> tuple[str, str] | None:
        session = self.sessions.get(sid)
        return (session.token, session.view_token) if session else None

    async def fate_of(self, sid: str, wait_s: float) -> str | None:
        """What became of the session when its worker went away (failed, or recreated elsewhere), waiting up
        to `wait_s` to hear it (None: its worker did not go away)."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        async with self._lost:
            try:
                await asyncio.wait_for(
                    self._lost.wait_for(lambda: session.note is not None and not session.moving), wait_s
                )
            except TimeoutError:
                return None
        return session.note

    # -- workers -------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(NODE_SCAN_S)
            try:
                await self._scan_nodes(first=False)
            except Exception:
                log.exception("scanning the Ray nodes failed")

    async def _scan_nodes(self, *, first: bool) -> None:
        """Starts workers on nodes that have none yet (all at the first scan; joined ones later)."""
        nodes = await asyncio.get_running_loop().run_in_executor(None, self._ray.nodes)
        starts = []
        for node in nodes:
            # A node's workers are started once; Ray restarts them (a node that died takes them along).
            if not node.get("Alive") or node["NodeID"] in self._nodes:
                continue
            self._nodes.add(node["NodeID"])
            plan = self._plan(node.get("Resources", {}))
            if plan is None:
                continue
            count, resources = plan
            for _ in range(count):
                starts.append(self._start_worker(node["NodeID"], resources))
            if self.spec.mode == "local":
                break  # local: this machine's node only
        for outcome in await asyncio.gather(*starts, return_exceptions=True):
            if isinstance(outcome, BaseException):
                if first:
                    raise ClusterError(f"an engine worker did not start ({first_line(outcome)})")
                log.warning("an engine worker did not start: %s", outcome)

    def _plan(self, resources: dict[str, float]) -> tuple[int, dict[str, float]] | None:
        """How many workers a node gets, and what each asks Ray for (None: it cannot host one)."""
        if self.settings.render.engine == "aniportrait":
            gpus = int(resources.get("GPU", 0))
            return (gpus, {"num_gpus": 1, "num_cpus": 1}) if gpus else None
        cpus = float(resources.get("CPU", 0))
        if cpus <= 0:
            return None
        count = self.spec.workers if self.spec.mode == "local" else max(1, int(cpus))
        return count, {"num_cpus": min(1.0, cpus / count)}

    async def _start_worker(self, node: str, resources: dict[str, float]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from facecast.server.worker import EngineWorker

        self._counter += 1
        name = f"w{self._counter}"
        settings = self._worker_settings(name, resources.get("num_cpus", 1.0))
        actor = EngineWorker.options(  # type: ignore[attr-defined]
            name=f"facecast-{name}-{secrets.token_hex(3)}",
            max_restarts=MAX_RESTARTS,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            **resources,
        ).remote(settings, name)
        worker = Worker(name, actor, node)
        self.workers[name] = worker
        await self._bring_up(worker)
        self._spawn(self._watch(worker))

    def _worker_settings(self, name: str, cpus: float) -> Settings:
        server = replace(self.settings.server, api_token=self.secret, cors_origins=[])
        if server.max_sessions is None:  # its share of the machine, not the whole machine
            render = self.settings.render
            whole = default_max_sessions(render.size, render.fps)
            server.max_sessions = max(1, int(whole * cpus / max(1.0, float(os.cpu_count() or 1)) + 0.5))
        return replace(self.settings, home=self.settings.home / "workers" / name, server=server)

    async def _bring_up(self, worker: Worker) -> None:
        info = await asyncio.wait_for(worker.actor.start.remote(), START_TIMEOUT_S)
        worker.info, worker.url = info, info["url"]
        worker.load = await worker.actor.load.remote()
        worker.state, worker.failure = "up", None
        log.info("engine worker %s up at %s (pid %s)", worker.name, worker.url, info.get("pid"))
        self._spawn(self._beacon(worker, info["host"], info["beacon"], info.get("pid")))

    async def _beacon(self, worker: Worker, host: str, port: int, pid: object) -> None:
        """Holds a connection to the worker process: it ends the moment that process does (a kill, a crash),
        well before Ray reports the actor dead."""
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return  # Ray's report stands in
        try:
            await reader.read()
        except OSError:
            pass
        finally:
            writer.close()
        if worker.info.get("pid") == pid and worker.state != "down" and not self._closing:
            await self._worker_lost(worker, "its process ended")

    async def _watch(self, worker: Worker) -> None:
        """Learns from Ray the moment the worker's process dies; then waits for Ray to restart it."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        while True:
            try:
                await worker.actor.wait_closed.remote()
                return  # stopped by close()
            except RayActorError as exc:
                await self._worker_lost(worker, first_line(exc))
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    await self._bring_up(worker)
                    worker.restarts += 1
                    break
                except ActorUnavailableError:  # Ray is restarting it
                    if time.monotonic() > deadline:
                        worker.failure = f"engine worker {worker.name} did not come back"
                        return
                    await asyncio.sleep(0.5)
                except (RayActorError, TimeoutError) as exc:  # out of restarts, or its node is gone
                    worker.failure = f"engine worker {worker.name} is gone ({first_line(exc)})"
                    log.warning(worker.failure)
                    return

    async def _worker_lost(self, worker: Worker, reason: str) -> None:
        if worker.state == "down":
            return  # heard already (from its beacon, or from Ray)
        log.warning("engine worker %s died: %s", worker.name, reason)
        worker.state = "down"
        worker.failure = f"engine worker {worker.name} died"
        async with self._lost:
            for sid in list(worker.sessions):
                session = self.sessions[sid]
                if self.settings.server.on_worker_loss == "recreate" and self.recreate is not None:
                    session.moving = True
                    self._spawn(self._move(session, worker.name))
                else:
                    session.failure = session.note = (
                        f"the engine worker holding this session ({worker.name}) died; create a new session"
                    )
            worker.sessions.clear()
            self._lost.notify_all()

    async def _move(self, session: PlacedSession, lost: str) -> None:
        """Recreates a session of a dead worker on another (idle, same avatar, same id and tokens)."""
        assert self.recreate is not None
        try:
            await self.recreate(session)
            session.note = (
                f"the engine worker holding this session ({lost}) died; the session was recreated, idle, on "
                f"{session.worker.name}: reconnect"
            )
            log.info("session %s recreated on %s", session.id, session.worker.name)
        except Exception as exc:
            session.failure = session.note = (
                f"the engine worker holding this session ({lost}) died and the session could not be "
                f"recreated ({first_line(exc)}); create a new session"
            )
        finally:
            session.moving = False
            async with self._lost:
                self._lost.notify_all()

    async def _poll_loads(self) -> None:
        """Each worker's load every LOAD_POLL_S; one that does not answer in time gets no new sessions."""
        while True:
            await asyncio.sleep(LOAD_POLL_S)
            up = [w for w in self.workers.values() if w.state in ("up", "unreachable")]
            answers = await asyncio.gather(
                *(asyncio.wait_for(w.actor.load.remote(), LOAD_TIMEOUT_S) for w in up), return_exceptions=True
            )
            for worker, answer in zip(up, answers, strict=True):
                if worker.state == "down":
                    continue
                if isinstance(answer, BaseException):
                    if worker.state == "up":
                        log.warning("engine worker %s does not answer; no new sessions for it", worker.name)
                    worker.state = "unreachable"
                else:
                    worker.load, worker.state = answer, "up"

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.spec.mode,
            "workers": [w.describe() for w in self.workers.values()],
            "sessions": len(self.sessions),
            "time": round(time.time(), 3),
        }
