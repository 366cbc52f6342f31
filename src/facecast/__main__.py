"""facecast command line: serve | render | avatar | bench | aniportrait | weights."""

from __future__ import annotations

import argparse
import logging
import sys

from facecast.cli import register_all
from facecast.cli.errors import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facecast",
        description="A portrait photo that talks back, live: audio in, a lip-synced talking head out "
        "(offline MP4 or a live WebRTC stream).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub)
    return parser


# Libraries whose INFO lines are per-connection chatter (aioice logs ~15 candidate-pair state changes for
# every WebRTC peer): WARNING and above only, unless --verbose.
CHATTY_LOGGERS = ("aioice", "aiortc")


def configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with --verbose) to stderr; MediaPipe's native lines and aioice/aiortc INFO only when verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    if verbose:
        from facecast.models.face import landmarks  # light: mediapipe itself loads only to detect

        landmarks.quiet_native_logs = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"facecast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("facecast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
