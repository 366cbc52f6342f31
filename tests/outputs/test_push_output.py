"""The push output's own logic, with the network connection replaced by a recorder (the real connection is
tested against nginx-rtmp in tests/server/test_rtmp_push.py): where a link starts, what a viewer of the
stream gets around an interrupt and lost frames, reconnecting, and the URLs and bitstreams it refuses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import av
import numpy as np
import pytest

from facecast.frames import OutputFrame, frame_samples
from facecast.outputs import push as push_module
from facecast.outputs.push import PushOutput
from facecast.outputs.push_link import PushError, parameter_sets, push_target
from facecast.outputs.video_encoder import EncoderPool
from facecast.stream.engine_runner import to_av_frames

FPS = 30


@dataclass
class Host:
    fps: int = FPS
    size: int = 64
    generation: int = 0
    encoders: EncoderPool = field(default_factory=lambda: EncoderPool(64, FPS))

    def is_stale(self, frame: OutputFrame) -> bool:
        return frame.speech and frame.generation < self.generation


class FakeLink:
    """Stands in for PushProcess: records what the push writes; fails where told."""

    made: list[FakeLink] = []
    refuse: str | None = None  # the next connection fails with this
    fail_at_video: int | None = None  # the next link fails on this video frame

    def __init__(self, target: object, fps: int, keyframe: av.Packet, width: int, height: int) -> None:
        if FakeLink.refuse is not None:
            raise PushError(FakeLink.refuse)
        self.video: list[int] = []
        self.audio = np.empty(0, np.float32)
        self.closed = False
        self.bytes_sent = 0
        self.fail_at, FakeLink.fail_at_video = FakeLink.fail_at_video, None
        FakeLink.made.append(self)

    def write(self, audio: np.ndarray, packet: av.Packet | None, frame: int) -> None:
        if frame == self.fail_at:
            raise PushError("the push server at test closed the connection")
        self.audio = np.concatenate([self.audio, audio])
        if packet is not None:
            self.video.append(frame)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_link(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLink.made, FakeLink.refuse, FakeLink.fail_at_video = [], None, None
    monkeypatch.setattr(push_module, "PushProcess", FakeLink)


def frame(index: int, *, key: bool, generation: int = 0, speech: bool = True) -> OutputFrame:
    lo, hi = frame_samples(index, FPS)
    audio = np.full(hi - lo, 0.25 + index / 1000, np.float32)  # each frame's audio is recognisable
    image = np.zeros((64, 64, 3), np.uint8)
    video, sound = to_av_frames(index, FPS, image, audio)
    packet = av.Packet(b"\x00\x00\x00\x01\x65" if key else b"\x00\x00\x00\x01\x41")
    packet.is_keyframe = key
    return OutputFrame(
        index=index, fps=FPS, image=image, audio=audio, generation=generation, speech=speech,
        video=video, audio_frame=sound, packets={"H264": packet},
    )  # fmt: skip


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.005)


def started(host: Host, states: list[str] | None = None) -> PushOutput:
    push = PushOutput(
        "rtmp://127.0.0.1/live/key",
        on_change=(lambda p: states.append(p.link_state)) if states is not None else None,
        backoff_s=(0.0, 0.0),
    )
    push.start(host)
    return push


def test_the_stream_starts_at_a_keyframe_and_follows_what_a_viewer_sees() -> None:
    host = Host()
    push = started(host)
    for k in (0, 1):
        push.on_frame(frame(k, key=False))  # before any keyframe: nothing to start from
    for k, key in ((2, True), (3, False), (4, False)):
        push.on_frame(frame(k, key=key))
    wait_until(lambda: FakeLink.made and len(FakeLink.made[0].video) == 3, "three frames out")
    host.generation = 1  # an interrupt: frame 5 is speech from before it
    push.on_frame(frame(5, key=False, generation=0))
    push.on_frame(frame(6, key=False, generation=1))  # new speech, but no keyframe yet
    push.on_frame(frame(7, key=True, generation=1))
    push.on_frame(frame(9, key=False, generation=1))  # frame 8 never reached the push
    push.on_frame(frame(10, key=True, generation=1))
    link = FakeLink.made[0]
    wait_until(lambda: len(link.video) == 5, "the frames after the interrupt")
    push.stop()
    push.finish()

    assert link.video == [0, 1, 2, 5, 8]  # link frame = session frame - 2; stale, unkeyed and lost: none
    assert link.closed and push.link_state == "stopped" and push.frames_sent == 5
    # The audio: contiguous from frame 2, the stale frame and the lost one silent, the rest as they were.
    spans = {k: [s - frame_samples(2, FPS)[0] for s in frame_samples(k, FPS)] for k in range(2, 11)}
    assert len(link.audio) == spans[10][1]
    for k, (lo, hi) in spans.items():
        expected = 0.0 if k in (5, 8) else 0.25 + k / 1000
        assert np.allclose(link.audio[lo:hi], expected), k


def test_a_dropped_link_reconnects_at_the_next_keyframe() -> None:
    host, states = Host(), []
    FakeLink.fail_at_video = 2
    push = started(host, states)
    for k in range(4):
        push.on_frame(frame(k, key=k == 0, speech=False))
    wait_until(lambda: push.reconnects == 1, "a reconnect")
    push.on_frame(frame(4, key=False, speech=False))
    push.on_frame(frame(5, key=True, speech=False))
    push.on_frame(frame(6, key=False, speech=False))
    wait_until(lambda: len(FakeLink.made) == 2 and len(FakeLink.made[1].video) == 2, "the new link streams")
    push.stop()
    assert FakeLink.made[0].video == [0, 1] and FakeLink.made[1].video == [0, 1]  # it starts afresh at 0
    assert states == ["live", "reconnecting", "live", "stopped"] and push.error is None


def test_a_first_connection_that_fails_fails_the_output() -> None:
    FakeLink.refuse = "the server at 127.0.0.1:1935 refused the stream (wrong application or stream key?)"
    push = started(Host())
    push.on_frame(frame(0, key=True))
    with pytest.raises(PushError, match="refused the stream"):
        push.connected.result(timeout=10)
    assert push.link_state == "failed" and "refused" in (push.error or "")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/live/key", "use rtmp://, rtmps:// or srt://"),
        ("rtmp:///live/key", "names no host"),
        ("rtmp://host/onlykey", "an application and a stream key"),
        ("rtmp://host:99999/live/key", "malformed"),
    ],
)
def test_urls_that_can_never_work_are_refused_in_one_sentence(url: str, words: str) -> None:
    with pytest.raises(PushError, match=words):
        push_target(url)


def test_the_stream_key_is_never_shown() -> None:
    assert (
        push_target("rtmp://a.rtmp.youtube.com/live2/abcd-efgh").shown == "rtmp://a.rtmp.youtube.com/live2/…"
    )
    assert push_target("rtmps://user:pw@host:443/app/key?x=1").shown == "rtmps://host:443/app/…"


def test_parameter_sets_come_from_a_real_keyframe() -> None:
    pool = EncoderPool(64, FPS)
    encoder = pool.acquire("H264")
    packet = encoder.encode(frame(0, key=True))
    assert packet is not None and packet.is_keyframe
    units = parameter_sets(bytes(packet)).split(b"\x00\x00\x00\x01")[1:]
    assert [u[0] & 0x1F for u in units] == [7, 8]  # SPS then PPS, nothing else
    with pytest.raises(PushError):
        parameter_sets(b"\x00\x00\x00\x01\x41abc")
