"""A push connection in a process of its own: the server hands it packets, it does the network.

Why a process: PyAV opens an output (avio_open, then avformat_write_header: the RTMP handshake and
publish) while holding the GIL, with no timeout. A server that is slow to answer would freeze every
session of the facecast process for as long, and one that never answers would hang it for good. In a
child process the handshake blocks nobody, a connection that does not come up in time is killed
(bounded, whatever the server does), and the AAC encoding runs off the server's GIL as well.

    parent (PushProcess)                        child (python -m facecast.outputs.push_process)
    hello: the first keyframe (parameter sets) ─► PushLink: probe, connect, publish
                                          ◄──── {"state": "live"} or {"error": "<one sentence>"}
    one message per frame: its audio, its packet ─► muxed and sent
                                          ◄──── {"bytes": N} about every second
    end                                      ─► flushed and closed

Messages to the child: a header "<BIIq" (kind, audio bytes, video bytes, frame number), then the audio
(float32 16 kHz) and the video packet (none when the frame shows no new picture).
Lines from the child: one JSON object each.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from typing import IO, Any

import av
import numpy as np

from facecast.outputs.push_link import (
    CONNECT_TIMEOUT_S,
    PushError,
    PushLink,
    PushTarget,
    failure,
    push_target,
)

HEADER = struct.Struct("<BIIq")
HELLO, FRAME, KEYFRAME, END = range(4)
START_TIMEOUT_S = 2 * CONNECT_TIMEOUT_S + 5  # interpreter start, TCP probe, RTMP handshake and publish
STALL_S = 5.0  # a connection that takes nothing for this long is given up (and retried)
REPORT_EVERY_S = 1.0


class PushProcess:
    """One connection (the parent's side): connected when constructed, PushError if it cannot be."""

    def __init__(self, target: PushTarget, fps: int, keyframe: av.Packet, width: int, height: int) -> None:
        self.target = target
        self.bytes_sent = 0
        self._buffer = b""
        command = [
            sys.executable,
            "-m",
            "facecast.outputs.push_process",
            target.url,
            str(fps),
            str(width),
            str(height),
        ]
        self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self._child.stdin is not None
        os.set_blocking(self._child.stdin.fileno(), False)  # writes wait in select, with a deadline
        try:
            self._send(HELLO, b"", bytes(keyframe))
            reply = self._reply(START_TIMEOUT_S)
        except OSError:
            reply = self._reply(1.0)
        if reply is None or "error" in reply:
            self.abort()
            raise PushError(
                reply["error"]
                if reply
                else f"the push server at {target.where} did not accept the stream within {START_TIMEOUT_S:g} s"
            )

    def write(self, audio: np.ndarray, packet: av.Packet | None, frame: int) -> None:
        """A frame's audio (float32 16 kHz, contiguous with the last) and, unless None, its video packet as the
        link's video frame `frame`."""
        kind = KEYFRAME if packet is not None and packet.is_keyframe else FRAME
        video = b"" if packet is None else bytes(packet)
        self._send(kind, np.ascontiguousarray(audio, np.float32).tobytes(), video, frame)

    def _send(self, kind: int, audio: bytes, video: bytes, frame: int = 0) -> None:
        """Raises PushError with the child's reason once it has gone (the connection dropped), or when the
        connection has taken nothing for STALL_S (a server that stopped reading)."""
        try:
            self._write(HEADER.pack(kind, len(audio), len(video), frame) + audio + video)
        except OSError:
            reply = self._reply(1.0)
            raise PushError(reply["error"] if reply and "error" in reply else self._gone()) from None
        while (reply := self._reply(0)) is not None:  # progress reports, or why it stopped
            if "error" in reply:
                raise PushError(reply["error"])

    def _write(self, data: bytes) -> None:
        stdin = self._child.stdin
        assert stdin is not None
        view = memoryview(data)
        deadline = time.monotonic() + STALL_S
        while view:
            try:
                view = view[os.write(stdin.fileno(), view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [stdin], [], left)[1]:
                    raise PushError(
                        f"the push server at {self.target.where} took nothing for {STALL_S:g} s"
                    ) from None

    def _gone(self) -> str:
        return f"the push to {self.target.shown} stopped (its process exited with {self._child.poll()})"

    def _reply(self, timeout_s: float) -> dict[str, Any] | None:
        """The child's next line within `timeout_s` (None: none yet, or it ended without one)."""
        stdout = self._child.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        self.bytes_sent = int(reply.get("bytes", self.bytes_sent))
        return reply

    def close(self) -> None:
        """Ends the stream: the child flushes and closes the connection."""
        try:
            self._send(END, b"", b"")
            self._child.wait(timeout=CONNECT_TIMEOUT_S)
        except (PushError, subprocess.TimeoutExpired):
            pass
        self.abort()

    def abort(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        for pipe in (self._child.stdin, self._child.stdout):
            if pipe is not None:
                pipe.close()


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _say(**reply: object) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """The child: `URL FPS WIDTH HEIGHT`, messages on stdin, replies on stdout."""
    url, fps, width, height = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    target = push_target(url)
    stdin = sys.stdin.buffer
    try:
        kind, _, length, _ = HEADER.unpack(_read(stdin, HEADER.size))
        if kind != HELLO:
            raise PushError("the push process expected a keyframe first")
        link = PushLink(target, fps, av.Packet(_read(stdin, length)), width, height)
    except EOFError:
        return 0
    except Exception as exc:
        _say(error=failure(target, exc))
        return 1
    _say(state="live")
    reported = time.monotonic()
    try:
        while True:
            kind, audio, video, frame = HEADER.unpack(_read(stdin, HEADER.size))
            payload = _read(stdin, audio + video)
            if kind == END:
                link.close()
                _say(state="closed", bytes=link.bytes_sent)
                return 0
            link.write_audio(np.frombuffer(payload[:audio], np.float32))
            if video:
                packet = av.Packet(payload[audio:])
                packet.is_keyframe = kind == KEYFRAME
                link.write_video(packet, frame)
            if time.monotonic() - reported >= REPORT_EVERY_S:
                reported = time.monotonic()
                _say(bytes=link.bytes_sent)
    except EOFError:  # the server went away or dropped the push: nothing to flush to
        link.abort()
        return 0
    except Exception as exc:
        link.abort()
        _say(error=failure(target, exc), bytes=link.bytes_sent)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
