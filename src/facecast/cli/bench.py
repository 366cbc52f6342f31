"""`facecast bench ...`: measurement tools that print figures (each lives in facecast.bench.<name>)."""

from __future__ import annotations

import argparse
import importlib

# Each facecast.bench.<module> defines `register(sub)` adding its own sub-command(s).
BENCH_MODULES = [
    "lipsync", "visemes", "media_matrix", "warp_speed", "live_latency", "live_capacity", "av_sync",
    "aniportrait_speed", "aniportrait_stream", "aniportrait_audio_stream", "av_playout", "soak",
    "realism", "look", "cluster_latency", "cluster_nodes", "fanout",
]  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure lip sync, visemes, speed and latency (prints figures)")
    bench_sub = parser.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    for name in BENCH_MODULES:
        importlib.import_module(f"facecast.bench.{name}").register(bench_sub)
