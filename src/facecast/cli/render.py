"""`facecast render`: a portrait and a speech recording → a lip-synced talking-head MP4."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facecast.cli.common import add_config_options, add_size_option, avatar_dir, settings_from
from facecast.cli.errors import CliError

if TYPE_CHECKING:
    import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "render",
        help="render a talking-head MP4 from a portrait and a speech file",
        description="Renders through the same path as the live server (audio frame by frame into the engine: motion "
        "driver → composer → renderer), so the file shows what a live viewer would see. Audio: anything "
        "PyAV decodes (wav, mp3, ogg, flac...), any rate and channel count.",
    )
    parser.add_argument("--avatar", help="photo file or stored avatar id (default: the bundled portrait)")
    parser.add_argument("--audio", required=True, type=Path, help="speech recording")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output .mp4 (H.264 + AAC); .webm or .mov when transparent",
    )
    target.add_argument(
        "--push",
        metavar="URL",
        help="stream the render live, in real time, to rtmp://HOST/APP/KEY, rtmps://... or srt://... (warp engine)",
    )
    parser.add_argument("--fps", type=int, choices=[25, 30], default=None, help="frame rate (default 30)")
    add_size_option(
        parser, "output frame size in pixels", "default from config: 512; a multiple of 8 for aniportrait"
    )
    parser.add_argument("--pose-template", type=Path, help="AniPortrait head-pose template (N, 6) .npy")
    parser.add_argument(
        "--no-head-motion", action="store_true", help="keep the head still (mouth and blinks only)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for blinks and idle motion (default 0)")
    parser.add_argument(
        "--engine", choices=["warp", "aniportrait"], default=None, help="renderer (default warp)"
    )
    parser.add_argument("--weights", type=Path, help="AniPortrait weights folder (engine aniportrait)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (engine aniportrait)")
    parser.add_argument("--cfg", type=float, default=3.5, help="guidance scale (engine aniportrait)")
    parser.add_argument(
        "--exact", action="store_true", help="reproduce the official sampler (engine aniportrait)"
    )
    parser.add_argument(
        "--background",
        default="keep",
        help="behind the person: keep (the photo's), color:#RRGGBB, image:PATH, blur, or transparent "
        "(-o .webm: VP9 with alpha, or .mov: ProRes 4444)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(parser)
    parser.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facecast.models.audio.decode import AudioError, decode_audio
    from facecast.models.avatar import AvatarError, AvatarStore, upscale_warning
    from facecast.models.motion.pose_template import PoseTemplateError, load_pose_template
    from facecast.models.render.background import BackgroundError, parse_background
    from facecast.outputs.alpha_writer import alpha_format_error

    settings = settings_from(args)
    fps = args.fps or settings.render.fps
    size = args.size or settings.render.size
    seed = settings.render.seed if args.seed is None else args.seed
    engine = args.engine or settings.render.engine
    try:
        background = parse_background(args.background)
    except BackgroundError as exc:
        raise CliError(str(exc)) from None
    if args.push is not None:
        if background.kind == "transparent":
            raise CliError("a push carries no alpha: render --background transparent to a .webm or .mov file")
        if engine != "warp":
            raise CliError(
                "--push streams in real time, which the warp engine does on a CPU; use -o for aniportrait"
            )
    elif background.kind == "transparent":
        if (problem := alpha_format_error(args.output)) is not None:
            raise CliError(problem)
    elif args.output.suffix.lower() != ".mp4":
        raise CliError(f"output {args.output} must end in .mp4 (.webm or .mov with --background transparent)")
    if args.avatar and not Path(args.avatar).exists() and ("/" in args.avatar or "." in args.avatar):
        raise CliError(f"photo {args.avatar} does not exist")
    store = AvatarStore(avatar_dir(args, settings))
    try:
        audio = decode_audio(args.audio)
        # Avatars are prepared at 512 px (or larger for larger output) and scaled by the renderer.
        avatar = store.resolve(args.avatar, size=max(size, 512)) if args.avatar else store.default()
        template_path = args.pose_template or settings.render.pose_template
        template = load_pose_template(Path(template_path)) if template_path else None
    except (AudioError, AvatarError, PoseTemplateError) as exc:
        raise CliError(str(exc)) from None
    # Judged at the output size: the avatar is prepared at 512 px or more and the renderer scales it.
    warning = upscale_warning(avatar.meta, size)
    if warning:
        print(f"facecast: warning: {warning}", file=sys.stderr)
    if engine == "aniportrait":
        if background.kind != "keep":
            raise CliError(
                "--background works with the warp engine (the AniPortrait engine keeps the photo's)"
            )
        from facecast.cli.render_aniportrait import render_aniportrait

        return render_aniportrait(args, avatar, audio, template, fps, size)
    desc = "push" if args.push else "render"
    with tqdm(total=len(audio), unit="sample", unit_scale=True, desc=desc, disable=args.quiet) as bar:
        frames = render_warp(
            avatar, audio, args.output, fps=fps, size=size, seed=seed, pose_template=template,
            head_motion=not args.no_head_motion, progress=bar.update, background=background, push=args.push,
        )  # fmt: skip
    seconds = len(audio) / 16000
    if args.push:
        from facecast.outputs.push_link import push_target

        print(f"pushed {frames} frames to {push_target(args.push).shown} ({fps} fps, {seconds:.2f} s)")
    else:
        print(f"wrote {args.output} ({frames} frames at {fps} fps, {seconds:.2f} s)")
    return 0


def render_warp(
    avatar: Any,
    audio: np.ndarray,
    out: Path | None,
    *,
    progress: Callable[[int], None] | None = None,
    push: str | None = None,
    **options: Any,
) -> int:
    """A warp-engine MP4 of `audio`, frames rendered in parallel on every core; returns the frame count.

    options: WarpEngine's (fps, size, seed, pose_template, head_motion, background); with a transparent
    background `out` is a .webm or .mov with alpha. push: stream to this URL in real time instead of `out`.
    """
    from facecast.models.render.engine import WarpEngine
    from facecast.outputs.offline_render import render_to_file

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        engine = WarpEngine(avatar, executor=pool, **options)
        if push is not None:
            from facecast.cli.render_push import push_render

            return push_render(engine, audio, push, progress=progress)
        assert out is not None
        background = options.get("background")
        transparent = background is not None and background.kind == "transparent"
        return render_to_file(engine, audio, out, progress=progress, transparent=transparent)
