"""`facecast-client`: the client package's command line.

    facecast-client mic --server URL [--avatar PHOTO_OR_ID] [--token TOKEN] [--play]
                        [--input-device NAME_OR_INDEX] [--output-device NAME_OR_INDEX] [--seconds N]

`mic` makes a session (uploading the photo when --avatar names a file), prints its viewing URL on one
line, streams the microphone into it as one continuous utterance, and prints the session's events as
they come (`speaking_started utterance=1`). `--play` plays the avatar's voice (the frames socket's audio)
on the output device. Ctrl-C or --seconds stops it: the utterance is ended, the sockets closed, the
session deleted, exit 0.

Exit codes: 0 done; 2 nothing could start (a wrong URL, an unknown avatar, a refused token, no audio
device), with one sentence on stderr (`error: ...`); 1 the session failed midway (the server went away);
130 interrupted before the session started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import aiohttp
import numpy as np

from facecast_client.api import FacecastClient
from facecast_client.errors import FacecastError
from facecast_client.pcm import SERVER_RATE_HZ
from facecast_client.playback import JitterBuffer, play_frames
from facecast_client.streams import FrameStream, SpeechStream

BLOCK_S = 0.02  # microphone blocks of 20 ms, sent as they are captured
CLEANUP_TIMEOUT_S = 5.0  # ending the utterance, closing the sockets, deleting the session


class CliError(Exception):
    """One sentence for stderr, and the exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast-client", description="A facecast server's client.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mic = commands.add_parser(
        "mic",
        help="talk through an avatar: the microphone streamed into a new session",
        description="Make a session, print its viewing URL, stream the microphone into it and print its "
        "events until Ctrl-C (or --seconds). With --play, use headphones: a loudspeaker feeds the avatar's "
        "voice back into the microphone.",
    )
    mic.add_argument("--server", required=True, metavar="URL", help="the server, http(s)://HOST[:PORT]")
    mic.add_argument(
        "--avatar",
        metavar="PHOTO_OR_ID",
        help="a portrait file to upload, or an avatar id (default: the server's)",
    )
    mic.add_argument(
        "--token",
        default=os.environ.get("FACECAST_API_TOKEN") or None,
        help="the server's API token (default: $FACECAST_API_TOKEN)",
    )
    mic.add_argument("--play", action="store_true", help="play the avatar's voice on the output device")
    mic.add_argument("--input-device", metavar="NAME_OR_INDEX", help="the microphone (default: the system's)")
    mic.add_argument("--output-device", metavar="NAME_OR_INDEX", help="for --play (default: the system's)")
    mic.add_argument("--seconds", type=_positive_seconds, metavar="N", help="stop after N seconds")
    mic.set_defaults(run=run_mic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = asyncio.run(args.run(args))
    except CliError as exc:
        return _fail(exc.message, exc.exit_code)
    except FacecastError as exc:
        return _fail(exc.message or str(exc), 2)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C before the session started, or twice
        return 130
    return code


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text!r}")
    return seconds


# -- audio devices (sounddevice, PortAudio) ------------------------------------------------------------


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except ImportError:
        raise CliError("the mic command needs sounddevice: pip install 'facecast-client[mic]'") from None
    except OSError as exc:  # sounddevice is there, the PortAudio library is not
        raise CliError(f"PortAudio could not be loaded ({exc}); install libportaudio2") from None
    return sounddevice


def _device_arg(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.strip().isdigit() else text


def _pick_device(sd: ModuleType, spec: str | None, kind: str) -> tuple[int | str | None, int, str]:
    """(device, sample rate, name) for an input or output; 16 kHz mono when the device takes it, else its
    own rate (converted here: SpeechStream resamples what it sends)."""
    device = _device_arg(spec)
    what = "microphone" if kind == "input" else "output device"
    try:
        info = sd.query_devices(device, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        detail = str(exc).rstrip(".")
        if spec is None:
            raise CliError(f"no default {what} was found ({detail})") from None
        raise CliError(
            f"no {what} {spec!r} was found ({detail}); `python -m sounddevice` lists them"
        ) from None
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, channels=1, dtype="int16", samplerate=SERVER_RATE_HZ)
        rate = SERVER_RATE_HZ
    except (ValueError, sd.PortAudioError):
        rate = int(info["default_samplerate"])
    return device, rate, str(info["name"])


# -- mic -----------------------------------------------------------------------------------------------


async def run_mic(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    streaming = False

    def on_signal() -> None:
        stop.set()
        if not streaming and main_task is not None:
            main_task.cancel()  # interrupt the setup (a slow upload, a server that does not answer)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals there (Windows)
            loop.add_signal_handler(signum, on_signal)

    sd = _sounddevice()
    mic_device, mic_rate, mic_name = _pick_device(sd, args.input_device, "input")
    speaker = _pick_device(sd, args.output_device, "output") if args.play else None
    try:
        fc = FacecastClient(args.server, token=args.token)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    session_id: str | None = None
    try:
        avatar_id = await fc.resolve_avatar(args.avatar)
        info = await fc.create_session(avatar=avatar_id)
        session_id = info["id"]
        speech = await fc.speech(session_id)
        frames = await fc.frames(session_id, image="jpeg") if speaker else None
        print(fc.base + info["links"]["view"], flush=True)
        print(f"listening on {mic_name} (Ctrl-C stops)", flush=True)
        streaming = True
        return await _stream(sd, speech, frames, (mic_device, mic_rate), speaker, stop, args.seconds)
    except asyncio.CancelledError:
        if streaming:
            raise
        return 130
    finally:
        if session_id is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fc.delete_session(session_id), CLEANUP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await fc.close()


async def _stream(
    sd: ModuleType,
    speech: SpeechStream,
    frames: FrameStream | None,
    mic: tuple[int | str | None, int],
    speaker: tuple[int | str | None, int, str] | None,
    stop: asyncio.Event,
    seconds: float | None,
) -> int:
    loop = asyncio.get_running_loop()
    captured: asyncio.Queue[np.ndarray] = asyncio.Queue()
    last_error: dict[str, Any] = {}

    def on_block(indata: np.ndarray, _frames: int, _time: Any, _status: Any) -> None:  # PortAudio's thread
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(captured.put_nowait, indata[:, 0].copy())

    mic_device, mic_rate = mic
    streams: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            streams.append(
                sd.InputStream(
                    device=mic_device,
                    samplerate=mic_rate,
                    channels=1,
                    dtype="int16",
                    blocksize=int(mic_rate * BLOCK_S),
                    callback=on_block,
                )
            )
            if speaker is not None and frames is not None:
                buffer = JitterBuffer(speaker[1])
                streams.append(
                    sd.OutputStream(
                        device=speaker[0],
                        samplerate=speaker[1],
                        channels=1,
                        dtype="int16",
                        callback=lambda out, _n, _t, _s: buffer.read_into(out[:, 0]),
                    )
                )
                tasks.append(asyncio.ensure_future(play_frames(frames, buffer, speaker[1])))
            for stream in streams:
                stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            raise CliError(f"the audio device could not be opened ({str(exc).rstrip('.')})") from None
        tasks.append(asyncio.ensure_future(_send(speech, captured, mic_rate)))
        tasks.append(asyncio.ensure_future(_print_events(speech, last_error)))
        stopper = asyncio.ensure_future(_wait_stop(stop, seconds))
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in tasks if task in done]
        if failed:
            stopper.cancel()
            raise CliError(_why_ended(failed[0], last_error), exit_code=1)
        # Stopped: the microphone first, then what it captured is sent, and the utterance ends.
        await _close_streams(streams)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not captured.empty():
            await speech.send(captured.get_nowait(), mic_rate)
        await asyncio.wait_for(speech.end(), CLEANUP_TIMEOUT_S)
        return 0
    except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
        raise CliError(f"the server went away ({exc or type(exc).__name__})", exit_code=1) from None
    finally:
        for task in tasks:
            task.cancel()
        await _close_streams(streams)
        for socket in (speech, frames):
            if socket is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket.close(), CLEANUP_TIMEOUT_S)


async def _wait_stop(stop: asyncio.Event, seconds: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _close_streams(streams: list[Any]) -> None:
    """Stop PortAudio streams without waiting on the event loop (abort: no draining)."""

    def close() -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.abort()
                stream.close()

    if streams:
        await asyncio.to_thread(close)
        streams.clear()


async def _send(speech: SpeechStream, captured: asyncio.Queue[np.ndarray], rate: int) -> None:
    """Microphone blocks to the audio socket as they come (whatever has piled up goes as one message)."""
    while True:
        blocks = [await captured.get()]
        while not captured.empty():
            blocks.append(captured.get_nowait())
        await speech.send(blocks[0] if len(blocks) == 1 else np.concatenate(blocks), rate)


async def _print_events(speech: SpeechStream, last_error: dict[str, Any]) -> None:
    async for event in speech.events():
        if event.get("type") == "error":
            last_error.update(event)
        print(_event_line(event), flush=True)


def _event_line(event: dict[str, Any]) -> str:
    """`speaking_started utterance=1`, `error code=server_shutdown message="the server is shutting down"`."""
    fields = " ".join(
        f"{key}={_value(value)}" for key, value in event.items() if key not in ("type", "session", "time")
    )
    return f"{event.get('type', 'event')} {fields}".rstrip()


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in '"=' for c in value) else json.dumps(value)
    return json.dumps(value)


def _why_ended(task: asyncio.Task[None], last_error: dict[str, Any]) -> str:
    exc = task.exception() if not task.cancelled() else None
    if last_error.get("message"):  # the server said why (e.g. it is shutting down)
        return str(last_error["message"])
    if isinstance(exc, FacecastError):
        return exc.message
    if exc is not None:
        return f"the server went away ({exc or type(exc).__name__})"
    return "the session's stream ended"


if __name__ == "__main__":
    sys.exit(main())
