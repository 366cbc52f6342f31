"""`facecast bench stream`: the streaming Lmk2Video engine on a weights folder (prints figures, last line JSON).

Items of issue 5: (1) UNet frame-evaluations per output frame, counted by the engine; (2) output fps of the
streaming engine vs the exact offline sampler on the same audio, one run: `speedup_vs_exact` against this
project's exact mode (which already skips upstream's discarded work), `speedup_vs_exact_upstream_schedule`
against the same sampler doing that work as the published code does (docs/aniportrait.md §5, §9); (3) seam
score with AR(1) noise between the offline and independent-window anchors; (4) latency budget per hop,
measured here and modelled for a GPU; (5) a GPU projection from the FLOP figures of docs/aniportrait.md §9
(no GPU measured by this script on CPU). Poses: whole-clip Audio2Mesh on the audio + the folder's reference
mesh / matrix (inputs/landmarks.npz), projected and drawn at --size; the reference photo is the folder's
inputs/ref_image.png.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

FPS = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("stream", help="streaming Lmk2Video: evals/frame, speed vs exact, seams, latency")
    parser.add_argument(
        "--weights", type=Path, required=True, metavar="DIR", help="weights folder (fixture layout)"
    )
    parser.add_argument(
        "--audio", type=Path, default=None, help="speech file (default: the folder's audio/speech.wav)"
    )
    parser.add_argument("--size", type=int, default=64, help="frame width = height in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--hop", type=int, default=12)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--streams", type=int, default=2, help="concurrent streams of the batching figure")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the seam score")
    parser.add_argument("--exact-steps", type=int, default=25)
    parser.add_argument("--exact-cfg", type=float, default=3.5)
    parser.add_argument(
        "--upstream-baseline", action=argparse.BooleanOptionalAction, default=True,
        help="also time the exact sampler doing upstream's discarded work (PoseGuider every step, reference "
        "attention on every CFG row), the published loop's cost",
    )  # fmt: skip
    parser.add_argument(
        "--audio-lookahead-s", type=float, default=0.2, help="streaming Audio2Mesh look-ahead"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    parser.add_argument(
        "--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
        help="torch.compile the denoising UNet (shared by the exact baselines; compile time is not timed)",
    )  # fmt: skip
    parser.add_argument("--tiny-vae", type=Path, default=None, metavar="DIR", help="AutoencoderTiny folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on shared 2-core hosts)")
    parser.set_defaults(func=run)


def _find(weights: Path, rel: str) -> Path | None:
    for base in (weights, weights.parent):
        if (base / rel).is_file():
            return base / rel
    return None


def bench_inputs(weights: Path, audio: Path | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference (size, size, 3) uint8, pose images (F, size, size, 3) uint8) from the folder and the audio."""
    from PIL import Image

    from facecast.cli.errors import CliError
    from facecast.models.aniportrait.networks.audio_weights import load_audio2mesh
    from facecast.models.audio.decode import decode_audio
    from facecast.models.face.pose_image import draw_pose_images
    from facecast.models.face.projection import project_with_matrices

    landmarks, ref_path = _find(weights, "inputs/landmarks.npz"), _find(weights, "inputs/ref_image.png")
    audio = audio or _find(weights, "audio/speech.wav")
    if landmarks is None or ref_path is None or audio is None:
        raise CliError(
            f"{weights} lacks inputs/landmarks.npz, inputs/ref_image.png or audio/speech.wav (--audio)"
        )
    lm = np.load(landmarks)
    offsets = load_audio2mesh(weights).infer(decode_audio(audio))  # (T, 468, 3), whole clip
    points = project_with_matrices(lm["ref_lmks3d_468"][None] + offsets, lm["ref_trans_mat"], size, size)
    ref = np.asarray(Image.open(ref_path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    return ref, draw_pose_images(points, size, size)


def _stream_all(
    engine: Any, ref: np.ndarray, poses: np.ndarray, key: str, seed: int
) -> tuple[float, float, int]:
    """(seconds for the whole clip, seconds to the first frame, frames) of one stream (avatar already cached)."""
    stream = engine.open_stream(ref, avatar_key=key, seed=seed)
    start, first, count = time.perf_counter(), None, 0
    for pose in poses:
        out = stream.push(pose)
        if out and first is None:
            first = time.perf_counter() - start
        count += len(out)
    count += len(stream.flush())
    stream.close()
    return time.perf_counter() - start, first or 0.0, count


def _concurrent(engine: Any, ref: np.ndarray, poses: np.ndarray, streams: int) -> tuple[float, int]:
    """Aggregate output fps of `streams` sessions on threads, and the largest UNet batch seen."""
    before = len(engine.worker.batch_sizes)
    threads = [
        threading.Thread(target=_stream_all, args=(engine, ref, poses, "bench", 100 + i))
        for i in range(streams)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return streams * len(poses) / seconds, max(engine.worker.batch_sizes[before:], default=0)


def run(args: argparse.Namespace) -> int:
    import torch

    from facecast.cli.errors import CliError
    from facecast.models.aniportrait.conformance.cost import gpu_projection, latency_model
    from facecast.models.aniportrait.conformance.seams import measure_seams
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.aniportrait.pipeline.context_windows import context_windows
    from facecast.models.aniportrait.streaming.lmk2video import StreamingLmk2Video

    if args.size % 8 or args.size <= 0 or args.steps < 1 or args.streams < 1 or args.seeds < 1:
        raise CliError("--size must be a positive multiple of 8; --steps, --streams and --seeds positive")
    torch.set_num_threads(args.threads)
    ref, poses = bench_inputs(args.weights, args.audio, args.size)
    opts = {"width": args.size, "height": args.size, "steps": args.steps, "guidance": args.guidance}
    opts |= {"device": args.device, "dtype": args.dtype, "compile": args.compile, "tiny_vae": args.tiny_vae}
    try:
        engine = StreamingLmk2Video(args.weights, hop=args.hop, **opts)
    except (WeightsError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    frames = len(poses)
    print(f"{frames} pose frames from the audio, {args.size}x{args.size}, device {engine.pipe.device} "
          f"{str(engine.pipe.dtype).replace('torch.', '')}, {args.steps} steps, hop {args.hop}, guidance {args.guidance}")  # fmt: skip
    try:
        # 1. Per-avatar state once, then one stream. A warm-up run of the whole clip first meets every window
        #    shape (first, full, last) once: kernel selection, allocator and, with --compile, compilation
        t0 = time.perf_counter()
        engine.avatar_state(ref, "bench")
        avatar_s = time.perf_counter() - t0
        _stream_all(engine, ref, poses, "bench", 99)
        evals_before = engine.unet_evals()
        stream_s, first_s, emitted = _stream_all(engine, ref, poses, "bench", 0)
        evals_per_frame = (engine.unet_evals() - evals_before) / emitted
        stream_fps = emitted / stream_s
        print(f"avatar state (CLIP, VAE latents, ReferenceNet bank, reference K/V): {avatar_s:.3f} s once")
        print(f"streaming: {stream_fps:.1f} fps, first frame after {first_s:.3f} s of compute, "
              f"{evals_per_frame:.2f} UNet frame-evaluations per output frame")  # fmt: skip
        multi_fps, max_batch = _concurrent(engine, ref, poses, args.streams)
        print(
            f"{args.streams} concurrent streams: {multi_fps:.1f} fps in total, UNet batches of up to {max_batch}"
        )
        # 2. The exact offline sampler on the same poses (25 steps, CFG 3.5, whole clip), as implemented here
        #    (PoseGuider once per window, CFG-uncond rows without reference attention) and with the work upstream
        #    does and discards (PoseGuider at every step, reference attention on every row): same outputs
        from PIL import Image

        noise = torch.randn(
            (1, 4, frames, args.size // 8, args.size // 8), generator=torch.Generator().manual_seed(42)
        )

        def exact_fps(upstream: bool) -> float:
            run = lambda: engine.pipe(  # noqa: E731
                Image.fromarray(ref), poses, num_inference_steps=args.exact_steps,
                guidance_scale=args.exact_cfg, latents=noise, exact=True, upstream_schedule=upstream,
            )  # fmt: skip
            t0 = time.perf_counter()
            engine.worker.call(run)
            return frames / (time.perf_counter() - t0)

        for upstream_schedule in {False, args.upstream_baseline}:  # warm-up of each exact path, as above
            engine.worker.call(
                lambda: engine.pipe(Image.fromarray(ref), poses[: engine.window], num_inference_steps=2,
                                    guidance_scale=args.exact_cfg, latents=noise[:, :, : engine.window],
                                    decode=False, upstream_schedule=upstream_schedule)  # noqa: B023
            )  # fmt: skip
        exact = exact_fps(False)
        upstream = exact_fps(True) if args.upstream_baseline else None
        windows = len(context_windows(frames, engine.window, engine.pipe.arch.context_overlap))
        exact_evals = (
            args.exact_steps
            * (2 if args.exact_cfg > 1 else 1)
            * windows
            * min(frames, engine.window)
            / frames
        )
        print(f"exact offline ({args.exact_steps} steps, CFG {args.exact_cfg}, PoseGuider once per window): "
              f"{exact:.2f} fps, {exact_evals:.1f} UNet frame-evaluations per frame; speed-up {stream_fps / exact:.1f}x")  # fmt: skip
        if upstream is not None:
            print(f"exact offline with upstream's work schedule (PoseGuider every step, reference attention on "
                  f"every row): {upstream:.2f} fps; speed-up {stream_fps / upstream:.1f}x")  # fmt: skip
        # 3. Seams
        seams = measure_seams(engine, ref, poses, seeds=tuple(range(args.seeds)))
        print(f"seams: r {seams.seam_ratio:.3f}, offline r_a {seams.seam_anchor_offline:.3f}, independent r_b "
              f"{seams.seam_anchor_independent:.3f}; score s {seams.seam_score:.3f} (per seed {seams.per_seed_scores})")  # fmt: skip
        # 4. Latency per hop: window compute measured here
        window_s = {args.hop: stream_s / max(1, -(-frames // args.hop))}
    finally:
        engine.close()
    for hop in (4, 8, 12):
        if hop in window_s:
            continue
        eng = StreamingLmk2Video(args.weights, hop=hop, **opts)
        try:
            eng.avatar_state(ref, "bench")
            _stream_all(eng, ref, poses, "bench", 99)
            seconds, _, _ = _stream_all(eng, ref, poses, "bench", 0)
            window_s[hop] = seconds / max(1, -(-frames // hop))
        finally:
            eng.close()
    latency = latency_model(window_s, lookahead_s=args.audio_lookahead_s, fps=FPS, steps=args.steps)
    for row in latency:
        print(f"hop {row['hop']:2d}: look-ahead {row['lookahead_s']:.3f} s + fill {row['fill_s']:.3f} s + compute "
              f"{row['compute_cpu_s']:.3f} s (CPU tiny) = {row['total_cpu_s']:.3f} s; GPU model "
              f"{row['total_gpu_s']:.3f} s, GPU realtime {row['gpu_realtime']}")  # fmt: skip
    projection = gpu_projection(steps=args.steps, hop=args.hop)
    print(f"GPU projection (not measured): {json.dumps(projection)}")
    figures = {
        "device": str(engine.pipe.device), "size": args.size, "frames": frames, "steps": args.steps,
        "hop": args.hop, "guidance": args.guidance,
        "unet_evals_per_frame": round(evals_per_frame, 3), "unet_evals_per_frame_exact": round(exact_evals, 2),
        "stream_fps": round(stream_fps, 2), "exact_fps": round(exact, 3),
        "speedup_vs_exact": round(stream_fps / exact, 2),
        "exact_upstream_schedule_fps": None if upstream is None else round(upstream, 3),
        "speedup_vs_exact_upstream_schedule": None if upstream is None else round(stream_fps / upstream, 2),
        "time_to_first_frame_compute_s": round(first_s, 4),
        "multi_stream_fps_total": round(multi_fps, 2), "streams": args.streams, "max_unet_batch": max_batch,
        **seams.to_json(), "latency_per_hop": latency, "gpu_projection": projection,
    }  # fmt: skip
    print(json.dumps(figures))
    return 0
