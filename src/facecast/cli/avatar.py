"""`facecast avatar add|list|show|remove`: prepare portraits into the avatar store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    show = avatar_sub.add_parser("show", help="print an avatar's metadata as JSON")
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
    return 0


def _list(args: argparse.Namespace) -> int:
    for meta in _store(args).list():
        print(f"{meta['id']}  {meta.get('size', '?')}px  {meta.get('name', '')}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        print(json.dumps(_store(args).get(args.id).meta, indent=1))
    except KeyError:
        raise CliError(f"no avatar with id '{args.id}'") from None
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        _store(args).delete(args.id)
    except KeyError:
        raise CliError(f"no avatar with id '{args.id}'") from None
    return 0
