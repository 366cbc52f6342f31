"""`facecast render --engine aniportrait`: audio → Audio2Mesh (+ Audio2Pose or a pose template) →
projection → pose images → Lmk2Video → MP4: the offline AniPortrait pipeline of docs/aniportrait.md §1."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facecast.cli.errors import CliError
from facecast.models.aniportrait.entry import ANIPORTRAIT_FPS
from facecast.models.avatar import Avatar


def render_aniportrait(
    args: argparse.Namespace,
    avatar: Avatar,
    audio: np.ndarray,
    template: np.ndarray | None,
    fps: int,
    size: int,
) -> int:
    """size: --size, else the config's render.size (a tiny-weights fixture config may go below --size's range)."""
    import cv2
    from tqdm import tqdm

    from facecast.config import load_settings
    from facecast.models.aniportrait.networks.audio2pose import postprocess_pose
    from facecast.models.aniportrait.networks.audio_weights import load_audio2mesh, load_audio2pose
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.aniportrait.pipeline.generate import generate_video
    from facecast.models.face.pose_image import draw_pose_images
    from facecast.models.face.projection import project_points
    from facecast.models.motion.pose_template import ping_pong_poses
    from facecast.outputs.mp4_writer import mp4_file

    if fps != ANIPORTRAIT_FPS:
        raise CliError(f"the aniportrait engine renders at {ANIPORTRAIT_FPS} fps (got --fps {fps})")
    weights = args.weights or load_settings(args.config).render.weights
    if not weights:
        raise CliError(
            "the aniportrait engine needs --weights DIR (the pretrained_model folder of the release)"
        )
    if size % 8:
        raise CliError(f"--size {size} must be a multiple of 8 for the aniportrait engine")
    seed = 42 if args.seed is None else args.seed
    try:
        print("audio → mesh" + (" (pose template)" if template is not None else " and head pose"), flush=True)
        offsets = load_audio2mesh(Path(weights)).infer(audio)  # (T, 468, 3)
        frames = len(offsets)
        if template is not None:
            poses = ping_pong_poses(template, frames)
        else:
            poses = postprocess_pose(load_audio2pose(Path(weights)).infer(audio, style_id=seed % 100))
        points = project_points(avatar.mesh[None] + offsets, avatar.matrix, poses, size, size)
        pose_images = draw_pose_images(points, size, size)
        ref = cv2.resize(avatar.image, (size, size), interpolation=cv2.INTER_AREA)
        with tqdm(total=args.steps, unit="step", desc="denoise", disable=args.quiet) as bar:
            video = generate_video(
                ref, pose_images, weights=Path(weights), steps=args.steps, cfg=args.cfg, seed=seed,
                exact=args.exact, progress=lambda step, total: bar.update(1),
            )  # fmt: skip
    except (WeightsError, ValueError) as exc:
        raise CliError(str(exc)) from None
    expected = -(-len(audio) * ANIPORTRAIT_FPS // 16000)
    with mp4_file(args.output, fps=ANIPORTRAIT_FPS, size=size) as writer:
        writer.write_audio(audio)
        for k, image in enumerate(video[:expected]):
            writer.write_video(k, image)
    print(
        f"wrote {args.output} ({min(len(video), expected)} frames at {ANIPORTRAIT_FPS} fps, aniportrait engine)"
    )
    return 0
