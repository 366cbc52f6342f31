"""A live push: the session streamed to an RTMP(S) or SRT server (YouTube, Twitch, nginx-rtmp, OBS...).

on_frame (event loop) only appends the frame to a bounded backlog; a thread of the output's own
connects, writes (through push_process.PushProcess: one child process per connection) and reconnects, so a slow or dead server never stalls the session
or its viewers: a backlog over BACKLOG_S loses its oldest frames, and the link then resumes at a keyframe.

What a viewer of the stream sees is what a WebRTC viewer sees: stale frames (speech from before an
interrupt) show no video and play silence, and video resumes at a keyframe of the new generation.

States (stats()["state"], reported through `on_change` at every change):
    connecting    the first connection is being made (the API waits for its outcome: `connected`)
    live          connected and streaming
    reconnecting  the connection dropped; retried with back-off (BACKOFF_MIN_S doubling to BACKOFF_MAX_S)
    stopped       stopped by its owner (or the session ended)
    failed        the first connection failed (the reason in `error`)
"""

from __future__ import annotations

import concurrent.futures
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from facecast.frames import OutputFrame, frame_samples
from facecast.outputs.base import Output, OutputHost, OutputState
from facecast.outputs.push_link import PushError, failure, push_target
from facecast.outputs.push_process import PushProcess
from facecast.outputs.video_encoder import SharedVideoEncoder

log = logging.getLogger(__name__)

BACKLOG_S = 2.0  # frames held while the link is slow or reconnecting
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 8.0
RATE_WINDOW_S = 5.0  # bitrate averaged over


@dataclass(frozen=True)
class _Item:
    """One frame as the push needs it, taken on the event loop."""

    index: int
    fps: int
    packet: av.Packet | None  # the session's H.264 packet for the frame (None: not encoded for us)
    generation: int
    audio: np.ndarray  # float32 16 kHz; silence when stale
    stale: bool
    current: int  # the session's generation when the frame went out
    width: int
    height: int


class PushOutput(Output):
    kind = "push"

    def __init__(
        self,
        url: str,
        *,
        on_change: Callable[[PushOutput], None] | None = None,
        backoff_s: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
    ) -> None:
        super().__init__()
        self.target = push_target(url)  # PushError for a URL that can never work
        self.id = secrets.token_hex(6)
        self.link_state = "connecting"
        self.reconnects = 0
        self.frames_sent = 0
        self.dropped = 0
        self.connected: concurrent.futures.Future[None] = concurrent.futures.Future()  # the first connection
        self._on_change = on_change
        self._backoff = backoff_s
        self._backlog: deque[_Item] = deque()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._encoder: SharedVideoEncoder | None = None
        self._sent: deque[tuple[float, int]] = deque()  # (monotonic s, bytes sent so far)
        self._thread = threading.Thread(target=self._run, name=f"push-{self.id}", daemon=True)

    # -- event loop ----------------------------------------------------------------------------
    def start(self, host: OutputHost) -> None:
        super().start(host)
        self._encoder = host.encoders.acquire("H264")
        self._encoder.request_keyframe(host.generation)
        self._thread.start()

    def on_frame(self, frame: OutputFrame) -> None:
        stale = self.host.is_stale(frame)
        item = _Item(
            frame.index, frame.fps, frame.packets.get("H264"), frame.generation,
            np.zeros_like(frame.audio) if stale else frame.audio, stale, self.host.generation,
            frame.video.width, frame.video.height,
        )  # fmt: skip
        with self._wake:
            self._backlog.append(item)
            if len(self._backlog) > BACKLOG_S * frame.fps:
                self._backlog.popleft()
                self.dropped += 1
            self._wake.notify()

    def stop(self) -> None:
        """No more frames; the thread ends the stream (a blocked connection ends when its socket does)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        if self._encoder is not None and self._host is not None:
            self._host.encoders.release(self._encoder)
            self._encoder = None
        super().stop()
        if self.state is OutputState.STOPPED:
            self._set("stopped")

    def finish(self, timeout: float = 10.0) -> None:
        """Wait until the stream has ended (after stop; blocking: call from a thread or a CLI)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "url": self.target.shown,
            "state": self.link_state,
            "bitrate_kbps": self.bitrate_kbps(),
            "reconnects": self.reconnects,
            "frames_sent": self.frames_sent,
            "frames_dropped": self.dropped,
            **({"error": self.error} if self.error else {}),
        }

    def bitrate_kbps(self) -> float:
        """What went out over the last RATE_WINDOW_S, in kbit/s (0 when nothing did)."""
        sent = list(self._sent)
        if len(sent) < 2 or time.monotonic() - sent[-1][0] > RATE_WINDOW_S:
            return 0.0
        (t0, b0), (t1, b1) = sent[0], sent[-1]
        return round((b1 - b0) * 8 / 1000 / max(t1 - t0, 1e-3), 1)

    # -- the push thread ------------------------------------------------------------------------
    def _set(self, state: str, reason: str | None = None) -> None:
        if state == self.link_state and reason is None:
            return
        self.link_state = state
        if reason is not None:
            self.error = reason
        elif state == "live":
            self.error = None
        if self._on_change is not None:
            self._on_change(self)

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            first = self._next_keyframe()
            if first is None:
                break
            try:
                link = self._connect(first)
            except Exception as exc:
                reason = failure(self.target, exc)
                if (
                    not self.connected.done()
                ):  # the first connection: the owner hears why, and nothing retries
                    self.fail(reason)
                    self._set("failed", reason)
                    _settle(self.connected, PushError(reason))
                    return
                log.info("push %s: reconnect failed: %s", self.target.shown, reason)
                self._set("reconnecting", reason)
                self._stopping.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._set("live")
            _settle(self.connected, None)  # after the state: the API answers with it
            try:
                self._stream(link, first)
                link.close()
                return
            except Exception as exc:
                link.abort()
                reason = failure(self.target, exc)
                log.warning("push %s dropped: %s", self.target.shown, reason)
                self.reconnects += 1
                self._set("reconnecting", reason)
        _settle(self.connected, PushError("the push was stopped before it connected"))

    def _connect(self, first: _Item) -> PushProcess:
        assert first.packet is not None
        return PushProcess(self.target, first.fps, first.packet, first.width, first.height)

    def _take(self) -> _Item | None:
        """The next frame (None: stopped)."""
        with self._wake:
            while not self._backlog:
                if self._stopping.is_set():
                    return None
                self._wake.wait()
            return self._backlog.popleft()

    def _next_keyframe(self) -> _Item | None:
        """A link starts now (the backlog is old news) at the next keyframe that is not stale."""
        with self._wake:
            self.dropped += len(self._backlog)
            self._backlog.clear()
        self._request_keyframe(self.host.generation)
        while (item := self._take()) is not None:
            if not item.stale and item.packet is not None and item.packet.is_keyframe:
                return item
            if item.stale:
                self._request_keyframe(item.current)
        return None

    def _request_keyframe(self, generation: int) -> None:
        encoder = self._encoder
        if encoder is not None:
            encoder.request_keyframe(generation)

    def _stream(self, link: PushProcess, first: _Item) -> None:
        """Writes frames from `first` on until stopped (raises what the connection raises)."""
        need_key: int | None = None  # a generation whose keyframe video waits for
        item: _Item | None = first
        expect = first.index
        while item is not None:
            audio = item.audio
            if item.index != expect:  # the backlog lost frames: their audio as silence, video from a keyframe
                lost_from, lost_to = (
                    frame_samples(expect, item.fps)[0],
                    frame_samples(item.index, item.fps)[0],
                )
                audio = np.concatenate([np.zeros(lost_to - lost_from, np.float32), audio])
                need_key = max(need_key or 0, item.generation)
                self._request_keyframe(item.generation)
            expect = item.index + 1
            packet = None
            if item.stale or item.packet is None:  # pre-interrupt speech, or an encoder that failed
                need_key = max(need_key or 0, item.current)
                self._request_keyframe(need_key)
            elif need_key is None or (item.packet.is_keyframe and item.generation >= need_key):
                need_key, packet = None, item.packet
            link.write(audio, packet, item.index - first.index)
            self.frames_sent += packet is not None
            self._sent.append((time.monotonic(), link.bytes_sent))
            while self._sent and self._sent[0][0] < self._sent[-1][0] - RATE_WINDOW_S:
                self._sent.popleft()
            item = self._take()


def _settle(future: concurrent.futures.Future[None], outcome: Exception | None) -> None:
    """The first connection's outcome, unless it is known already (or its waiter gave up and cancelled)."""
    try:
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
    except concurrent.futures.InvalidStateError:
        pass
