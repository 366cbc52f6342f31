"""The frames WebSocket: each image with exactly its audio, for Pipecat / LiveKit style integrations."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from facecast_client import BadRequest, FacecastClient, Frame, FrameStream, Unauthorized
from scipy.signal import resample_poly

from facecast.config import Settings
from facecast.server.runner import RunningServer, running_server


async def frames_until(stream: FrameStream, done: int, timeout: float = 30) -> list[Frame]:
    """Frames until `done` frames after the first one that ends an utterance."""
    out: list[Frame] = []
    after = None
    while after is None or len(out) < after + done:
        out.append(await asyncio.wait_for(stream.next_frame(), timeout))
        if out[-1].ends_utterance and after is None:
            after = len(out)
    return out


async def test_frames_carry_the_speech_with_its_images(
    server: RunningServer, client: FacecastClient, speech: np.ndarray
) -> None:
    sid = (await client.create_session())["id"]
    frames = await client.frames(sid, image="rgb24")
    voice = await client.speech(sid)
    said = speech[: 16000 * 2]
    # A TTS's 44.1 kHz stereo float: converted by the client, not refused.
    stereo = np.repeat(resample_poly(said, 441, 160)[:, None], 2, axis=1).astype(np.float32)
    await voice.send(stereo.reshape(-1), sample_rate=44100, channels=2)
    await voice.end()
    got = await frames_until(frames, done=10)
    await frames.close()
    await voice.close()

    assert [f.index for f in got] == list(range(got[0].index, got[0].index + len(got)))  # none lost
    assert {f.fps for f in got} == {30} and all(f.image.shape == (256, 256, 3) for f in got)
    assert all(f.audio.size in (533, 534) for f in got)  # 16000 / 30 samples, exactly the frame's
    spoken = [f for f in got if f.speech]
    assert [f.ends_utterance for f in got].count(True) == 1 and spoken[-1].ends_utterance
    assert not any(f.speech for f in got[got.index(spoken[-1]) + 1 :])  # idle after the end
    heard = np.concatenate([f.audio for f in spoken]).astype(np.float32) / 32767
    assert abs(heard.size - said.size) < 16000 * 0.05
    n = min(heard.size, said.size)
    assert np.corrcoef(heard[:n], said[:n])[0, 1] > 0.95  # the same speech, not shifted
    moving = np.std([f.image.astype(np.float32) for f in spoken], axis=0).mean()
    assert moving > 1.0  # the face moves while it speaks


async def test_jpeg_frames_decode(server: RunningServer, client: FacecastClient) -> None:
    sid = (await client.create_session())["id"]
    jpeg, raw = await client.frames(sid, image="jpeg", quality=90), await client.frames(sid, image="rgb24")
    a = await asyncio.wait_for(jpeg.next_frame(), 10)
    b = await asyncio.wait_for(raw.next_frame(), 10)
    while b.index < a.index:
        b = await asyncio.wait_for(raw.next_frame(), 10)
    while a.index < b.index:
        a = await asyncio.wait_for(jpeg.next_frame(), 10)
    assert a.image.shape == b.image.shape == (256, 256, 3)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 4  # the same frame, JPEG-compressed
    await jpeg.close()
    await raw.close()


async def test_a_slow_reader_loses_its_oldest_frames_not_the_sessions_pace(
    server: RunningServer, client: FacecastClient
) -> None:
    sid = (await client.create_session())["id"]
    slow = await client.frames(sid, image="rgb24")  # 196 KB a frame, unread: the socket's buffers fill
    fast = await client.frames(sid, image="jpeg")
    got = [await asyncio.wait_for(fast.next_frame(), 10) for _ in range(120)]
    assert [f.index for f in got] == list(range(got[0].index, got[0].index + 120))
    late = [(await asyncio.wait_for(slow.next_frame(), 10)).index for _ in range(120)]
    assert any(b - a > 1 for a, b in zip(late, late[1:], strict=False))  # it skipped ahead
    await slow.close()
    await fast.close()


@pytest.mark.parametrize(
    ("query", "code"),
    [({"image": "png"}, "bad_image_format"), ({"quality": 0}, "bad_quality")],
)
async def test_bad_options_are_refused_in_words(
    server: RunningServer, client: FacecastClient, query: dict[str, object], code: str
) -> None:
    sid = (await client.create_session())["id"]
    with pytest.raises(BadRequest) as refused:
        await client.frames(sid, **query)  # type: ignore[arg-type]
    assert refused.value.status == 400 and refused.value.code == code


async def test_frames_need_the_session_token(settings: Settings) -> None:
    settings.server.api_token = "s3cret"
    async with running_server(settings) as srv:
        async with FacecastClient(srv.url, "s3cret") as admin, FacecastClient(srv.url) as anonymous:
            session = await admin.create_session()
            with pytest.raises(Unauthorized) as refused:
                await anonymous.frames(session["id"])
            assert refused.value.code == "unauthorized"
            own = await anonymous.frames(session["id"], token=session["token"])  # as a subprotocol
            assert (await asyncio.wait_for(own.next_frame(), 10)).image.shape == (256, 256, 3)
            await own.close()
