"""`facecast bench audio2mesh-stream`: streamed vs whole-clip Audio2Mesh (prints figures, last line JSON).

For each speech file and look-ahead, the clip is pushed in small chunks through StreamingAudio2Mesh and
compared with Audio2Mesh.infer on the whole clip: mean |streamed − whole| relative to the whole clip's
motion range (p95 − p5 over time per vertex coordinate). With random tiny weights (a conformance
fixture) the figures test the mechanism, not lip-sync quality.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_LOOKAHEADS_S = (0.0, 0.1, 0.2, 0.4)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "audio2mesh-stream",
        help="streamed Audio2Mesh vs whole clip: deviation per look-ahead",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, metavar="DIR", help="AniPortrait weights folder")
    source.add_argument(
        "--random-full-size",
        action="store_true",
        help="wav2vec2-base-sized Audio2Mesh with random weights: timing of the published architecture",
    )
    parser.add_argument(
        "--audio",
        type=Path,
        action="append",
        default=None,
        metavar="FILE",
        help="speech file (repeatable; default: the weights folder's audio/speech.wav when it is a fixture)",
    )
    parser.add_argument(
        "--lookahead", type=float, nargs="+", default=list(DEFAULT_LOOKAHEADS_S), metavar="S",
        help="audio look-ahead values in seconds",
    )  # fmt: skip
    parser.add_argument("--left-context", type=float, default=2.0, metavar="S", help="past audio per window")
    parser.add_argument("--normalization", choices=["running", "window"], default="running")
    parser.add_argument(
        "--block-frames",
        type=int,
        default=1,
        help="frames per wav2vec2 window (the live engine uses its hop)",
    )
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="size of the pushed audio chunks")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    parser.set_defaults(func=run)


def _audio_files(args: argparse.Namespace) -> list[Path]:
    from facecast.cli.errors import CliError

    files = list(args.audio or [])
    if not files and args.weights is not None:
        candidate = args.weights / "audio" / "speech.wav"
        if candidate.is_file():
            files = [candidate]
    if not files:
        raise CliError("no speech to measure: give --audio FILE (repeatable)")
    for f in files:
        if not f.is_file():
            raise CliError(f"audio file {f} does not exist")
    return files


def motion_deviation(streamed: np.ndarray, whole: np.ndarray) -> dict[str, float]:
    """Per-vertex error of streamed vs whole-clip offsets relative to the whole clip's motion range.

    streamed, whole: (T, V, 3). range = p95 − p5 over time per vertex coordinate (V, 3);
    rel_mean = mean |streamed − whole| / mean range; rel_p95_frame = 95th percentile of the per-frame mean
    error over mean range; rel_max_vertex = the worst vertex's mean error over its own mean range.
    """
    if streamed.shape != whole.shape:
        raise ValueError(f"shapes differ: {streamed.shape} vs {whole.shape}")
    err = np.abs(streamed.astype(np.float64) - whole.astype(np.float64))
    motion = np.percentile(whole, 95, axis=0) - np.percentile(whole, 5, axis=0)  # (V, 3)
    scale = float(motion.mean()) or 1.0
    per_vertex = err.mean(axis=(0, 2)) / np.maximum(motion.mean(axis=1), 1e-12)
    return {
        "rel_mean": float(err.mean() / scale),
        "rel_p95_frame": float(np.percentile(err.mean(axis=(1, 2)), 95) / scale),
        "rel_max_vertex": float(per_vertex.max()),
        "motion_range_mean": scale,
    }


def measure(model: Any, audio: np.ndarray, lookahead_s: float, args: argparse.Namespace) -> dict[str, float]:
    """Stream `audio` in chunks and compare with the whole clip. → deviation figures and ms per frame."""
    from facecast.models.aniportrait.streaming.audio import StreamingAudio2Mesh

    whole = model.infer(audio)
    stream = StreamingAudio2Mesh(
        model,
        lookahead_s=lookahead_s,
        left_context_s=args.left_context,
        normalization=args.normalization,
        block_frames=args.block_frames,
    )
    chunk = max(1, int(round(args.chunk_ms * 16)))
    t0 = time.perf_counter()
    frames = []
    for i in range(0, audio.size, chunk):
        frames += stream.push(audio[i : i + chunk])
    frames += stream.flush()
    elapsed = time.perf_counter() - t0
    streamed = np.stack([f.mesh_offsets for f in frames])
    figures = motion_deviation(streamed, whole)
    figures["ms_per_frame"] = 1000.0 * elapsed / len(frames)
    figures["frames"] = len(frames)
    return figures


def random_full_size(device: str) -> Any:
    """Audio2Mesh with the published sizes (wav2vec2-base, latent 512) and seeded random weights."""
    import torch
    from transformers import Wav2Vec2Config

    from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
    from facecast.models.aniportrait.networks.wav2vec import BASE_960H

    torch.manual_seed(0)
    return Audio2Mesh(Wav2Vec2Config(**BASE_960H)).eval().to(device)


def run(args: argparse.Namespace) -> int:
    import torch

    from facecast.cli.errors import CliError
    from facecast.models.aniportrait.networks.audio_weights import load_audio2mesh
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.audio.decode import decode_audio

    files = _audio_files(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.random_full_size:
        model = random_full_size(device)
        fixture = True
    else:
        try:
            model = load_audio2mesh(args.weights, device)
        except WeightsError as exc:
            raise CliError(str(exc)) from exc
        fixture = (args.weights / "configs").is_dir() or (args.weights.parent / "configs").is_dir()
    rows: list[dict[str, Any]] = []
    print(f"Audio2Mesh streamed vs whole clip ({args.normalization} normalisation, left context "
          f"{args.left_context} s, blocks of {args.block_frames}, {args.chunk_ms} ms chunks, {device})")  # fmt: skip
    print(
        f"{'audio':<28} {'look-ahead s':>12} {'rel mean':>9} {'rel p95':>8} {'worst vtx':>9} {'ms/frame':>9}"
    )
    for path in files:
        audio = decode_audio(path)
        for lookahead in args.lookahead:
            fig = measure(model, audio, lookahead, args)
            rows.append({"audio": path.name, "lookahead_s": lookahead, **fig})
            print(f"{path.name:<28} {lookahead:>12.2f} {fig['rel_mean']:>9.4f} {fig['rel_p95_frame']:>8.4f} "
                  f"{fig['rel_max_vertex']:>9.4f} {fig['ms_per_frame']:>9.2f}")  # fmt: skip
    by_lookahead = {
        str(la): float(np.mean([r["rel_mean"] for r in rows if r["lookahead_s"] == la]))
        for la in args.lookahead
    }
    if fixture:
        print("note: random weights (fixture or --random-full-size): deviations test the mechanism only")
    summary = {
        "weights": "random-full-size" if args.random_full_size else str(args.weights),
        "normalization": args.normalization,
        "left_context_s": args.left_context,
        "block_frames": args.block_frames,
        "rel_mean_by_lookahead": by_lookahead,
        "random_fixture_weights": fixture,
        "results": rows,
    }
    print(json.dumps(summary))
    return 0
