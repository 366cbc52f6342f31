"""`facecast serve`: the live server (REST API, WebRTC, WHIP/WHEP, WebSocket audio, browser client)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facecast.cli.common import add_size_option, settings_from
from facecast.cli.errors import CliError

SHUTDOWN_TIMEOUT_S = 1.0  # issue 12: SIGTERM to exit within 3 s


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the live talking-head server",
        description="Serve the browser client at / and the JSON API under /v1 (avatars, sessions, WebRTC offer/"
        "answer, WHEP/WHIP, WebSocket PCM ingest, /say, recording, /metrics). Without an API token "
        "(server.api_token or FACECAST_API_TOKEN) it listens on loopback only.",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML settings file (e.g. configs/default.yaml)"
    )
    parser.add_argument("--host", default=None, help="address to listen on (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default from config: 8080)")
    parser.add_argument("--home", type=Path, default=None, help="data folder: avatar store and recordings")
    parser.add_argument("--fps", type=int, choices=(25, 30), default=None, help="default session frame rate")
    add_size_option(parser, "output frame size in pixels (square)", "default from config: 512")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="AniPortrait weights folder for the 'aniportrait' engine (overrides render.weights)",
    )
    parser.add_argument(
        "--ice-host",
        action="append",
        default=None,
        metavar="ADDR",
        help="address to offer as ICE host candidate (repeatable; default: 127.0.0.1 when listening on "
        "loopback, else all non-loopback interfaces)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allow cross-origin API calls from ORIGIN (repeatable, '*' for any)",
    )
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="WHERE",
        help="run sessions on engine workers of a Ray cluster: local[:N] (a Ray instance here with N workers, "
        "default 2), auto (the cluster this machine joined), HOST:PORT of a Ray head (`ray start --head`), or "
        "ray://HOST:PORT of its Ray Client server (from a machine outside the cluster); "
        "default: every session in this process",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from facecast.server.app import UnsafeBindError, check_bind, create_app

    settings = settings_from(args)
    server = settings.server
    server.host = args.host or server.host
    server.port = args.port if args.port is not None else server.port
    if args.home is not None:
        settings.home = args.home
    if args.fps is not None:
        settings.render.fps = args.fps
    if args.size is not None:
        settings.render.size = args.size
    if args.weights is not None:
        settings.render.weights = str(args.weights)
    if settings.render.engine == "aniportrait" or args.weights is not None:
        check_weights(settings.render.weights)
    if args.ice_host:
        server.ice_host_addresses = list(args.ice_host)
    if args.cors_origin:
        server.cors_origins = list(args.cors_origin)
    try:
        check_bind(settings, server.host)
    except UnsafeBindError as exc:
        raise CliError(str(exc)) from None
    cluster = None
    if args.cluster is not None:
        from facecast.server.cluster import Cluster
        from facecast.server.ray_connect import ClusterError, ClusterSpec

        try:
            cluster = Cluster(settings, ClusterSpec.parse(args.cluster))
            cluster.connect()
        except ClusterError as exc:
            raise CliError(str(exc)) from None
    app = create_app(settings, cluster=cluster)
    print(
        f"facecast: serving on http://{server.host}:{server.port}/ (API under /v1, Ctrl-C to stop)",
        flush=True,
    )
    try:
        # SIGTERM: the app's shutdown hooks say goodbye to every WebSocket and event stream and close the
        # sessions (recordings finished); handlers still running after that get this long, not 60 s.
        web.run_app(app, host=server.host, port=server.port, print=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    except OSError as exc:
        raise CliError(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None
    return 0


def check_weights(weights: str | None) -> None:
    """Refuse to start with AniPortrait as the engine and no usable weights folder (one line, before serving)."""
    if not weights:
        raise CliError(
            "the 'aniportrait' engine needs AniPortrait weights: pass --weights DIR (or set render.weights)"
        )
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.aniportrait.networks.weights import resolve_weights

    try:
        resolve_weights(Path(weights).expanduser())
    except WeightsError as exc:
        raise CliError(str(exc)) from None
