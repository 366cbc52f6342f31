"""`facecast avatar add|list|show|remove`: prepare portraits into the avatar store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from facecast.cli.common import add_config_options, add_size_option, avatar_dir, settings_from
from facecast.cli.errors import CliError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "avatar",
        help="prepare a portrait photo into an avatar (face mesh, crop, geometry) and manage the store",
        description="Avatars are prepared once from a photo with exactly one face and kept under a content "
        "hash, so adding the same photo again is instant.",
    )
    avatar_sub = parser.add_subparsers(dest="avatar_command", required=True, metavar="ACTION")
    add = avatar_sub.add_parser("add", help="prepare PHOTO and store it; prints the avatar id")
    add.add_argument("photo", type=Path, help="portrait image (PNG, JPEG, WebP...) with exactly one face")
    add_size_option(add, "square crop size in pixels", "default 512", default=512)
    add.add_argument("--name", default="", help="a label shown in lists (default: the file name)")
    add_config_options(add)
    add.set_defaults(func=_add)
    lst = avatar_sub.add_parser("list", help="list stored avatars")
    add_config_options(lst)
    lst.set_defaults(func=_list)
    show = avatar_sub.add_parser(
        "show", help="print an avatar's metadata as JSON (stdout) and its crop in words (stderr)"
    )
    show.add_argument("id")
    add_config_options(show)
    show.set_defaults(func=_show)
    rm = avatar_sub.add_parser("remove", help="delete an avatar from the store")
    rm.add_argument("id")
    add_config_options(rm)
    rm.set_defaults(func=_remove)


def _store(args: argparse.Namespace):  # noqa: ANN202 - AvatarStore imported lazily (mediapipe is heavy)
    from facecast.models.avatar import AvatarStore

    return AvatarStore(avatar_dir(args, settings_from(args)))


def _add(args: argparse.Namespace) -> int:
    from facecast.models.avatar import AvatarError

    if not args.photo.is_file():
        raise CliError(f"photo {args.photo} does not exist")
    try:
        avatar = _store(args).add(args.photo.read_bytes(), name=args.name or args.photo.name, size=args.size)
    except AvatarError as exc:
        raise CliError(f"{args.photo}: {exc}") from None
    print(avatar.id)
    if avatar.meta.get("warning"):
        print(f"facecast: warning: {args.photo}: {avatar.meta['warning']}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for meta in _store(args).list():
        print(f"{meta['id']}  {meta.get('size', '?')}px  {meta.get('name', '')}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        meta = _store(args).get(args.id).meta
    except KeyError:
        raise CliError(f"no avatar with id '{args.id}'") from None
    # Words on stderr, so stdout stays one JSON document for scripts.
    print(describe_crop(meta), file=sys.stderr)
    if meta.get("warning"):
        print(f"warning: {meta['warning']}", file=sys.stderr)
    print(json.dumps(meta, indent=1))
    return 0


def describe_crop(meta: dict[str, Any]) -> str:
    """One line on where the avatar's square comes from in the photo and how much it was scaled."""
    from facecast.models.avatar import MAX_SHARP_SCALE

    box, size = meta.get("crop_box"), meta.get("size")
    if not box or not size:
        return "crop: not recorded (avatar prepared by an older facecast)"
    x0, y0, side = box
    scale = size / side
    if scale > MAX_SHARP_SCALE:
        verdict = "upscaled: soft"
    elif scale > 1:
        verdict = "upscaled slightly: sharp enough"
    else:
        verdict = "not upscaled: sharp"
    photo = f"{meta['source_width']}x{meta['source_height']} photo" if "source_width" in meta else "photo"
    return (
        f"crop: {side} px square at ({x0}, {y0}) of the {photo}, scaled {scale:.2f}x to {size} px ({verdict})"
    )


def _remove(args: argparse.Namespace) -> int:
    try:
        _store(args).delete(args.id)
    except KeyError:
        raise CliError(f"no avatar with id '{args.id}'") from None
    return 0
