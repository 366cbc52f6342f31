"""The LiveKit Agents integration against a real facecast server: FacecastVideoGenerator on its own (audio
in, video and audio frames out, in sync, interrupted on time) and bad input."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest
from facecast_client import FacecastClient, NotFound, Unreachable
from facecast_client.frames import Frame
from facecast_client.live import LiveAvatar
from facecast_client.livekit import FacecastAvatarSession, FacecastVideoGenerator
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import AudioSegmentEnd
from livekit_support import (
    FPS,
    OUT_RATE,
    SIZE,
    SPEECH_RATE,
    Collected,
    StandInRoom,
    best_match,
    per_video_frame,
    samples,
    speech,
    to_16k,
    tts_frames,
)

from conftest import ServerProcess, lipsync

# -- the generator on its own ----------------------------------------------------------------------------


async def test_audio_in_synced_video_and_audio_out(
    generator: tuple[FacecastVideoGenerator, list[Frame]], media_dir: Path, tmp_path: Path
) -> None:
    gen, seen = generator
    said = speech(media_dir, "speech_1.wav", 4.0)
    out = Collected(gen)
    await out.wait(lambda: out.count(rtc.VideoFrame) >= 10, what="idle frames")  # idle before speech
    for frame in tts_frames(said, 48000, 2, 0.01):  # 10 ms of 48 kHz stereo, faster than real time
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())
    await out.wait(lambda: out.count(AudioSegmentEnd) >= 1, what="the utterance's end")
    end = out.items.index(next(i for i in out.items if isinstance(i, AudioSegmentEnd)))
    await out.wait(lambda: out.count(rtc.VideoFrame, end) >= 15, what="idle frames after speech")
    await out.stop()
    items = list(out.items)

    # Video: every facecast frame, in order, as an RGB24 frame of the session's size.
    pairs = per_video_frame(items)
    assert len(pairs) == len(seen)
    assert [f.index for f in seen] == list(range(seen[0].index, seen[0].index + len(seen)))
    assert all(v.type == rtc.VideoBufferType.RGB24 and (v.width, v.height) == (SIZE, SIZE) for v, _ in pairs)

    # Audio: after exactly the speaking frames, at the configured rate, one frame's worth each; the
    # utterance spans its duration in frames of session time (4 s: 120 frames at 30 fps).
    audio_frames = [i for i in items if isinstance(i, rtc.AudioFrame)]
    assert all(a.sample_rate == OUT_RATE and a.num_channels == 1 for a in audio_frames)
    assert [audio is not None for _, audio in pairs] == [f.speech for f in seen]
    speaking = sum(f.speech for f in seen)
    assert abs(speaking - said.size / SPEECH_RATE * FPS) <= 2, speaking
    assert np.median([a.samples_per_channel for a in audio_frames]) == OUT_RATE // FPS
    total_s = sum(a.samples_per_channel for a in audio_frames) / OUT_RATE
    assert abs(total_s - speaking / FPS) <= 1 / FPS, (total_s, speaking)
    assert abs(total_s - said.size / SPEECH_RATE) <= 1 / FPS, total_s

    # One AudioSegmentEnd, right after the last speaking frame's audio.
    ends = [k for k, i in enumerate(items) if isinstance(i, AudioSegmentEnd)]
    last_audio = max(k for k, i in enumerate(items) if isinstance(i, rtc.AudioFrame))
    assert ends == [last_audio + 1]
    assert [f.ends_utterance for f in seen].count(True) == 1

    # What came out is what was said (resampled twice on the way: 48 kHz stereo -> 16 kHz -> 24 kHz).
    got = to_16k(np.concatenate([samples(a) for a in audio_frames]), OUT_RATE)
    lag, corr = best_match(said, got)
    assert abs(lag) <= 16 and corr >= 0.95, (lag, corr)

    # In sync, by the project's own measure: each image with its own audio (silence when idle).
    images = [np.frombuffer(v.data, np.uint8).reshape(SIZE, SIZE, 3) for v, _ in pairs]
    silence = np.zeros(OUT_RATE // FPS, np.int16)
    track = np.concatenate([silence if audio is None else audio for _, audio in pairs])
    measured = lipsync(images, track, OUT_RATE, FPS, tmp_path / "livekit.mp4")
    assert measured["best_lag"] == 0 and measured["best_corr"] >= 0.7, measured


async def test_clear_buffer_stops_speech_within_three_frames_and_video_goes_on(
    generator: tuple[FacecastVideoGenerator, list[Frame]], media_dir: Path
) -> None:
    gen, seen = generator
    out = Collected(gen)
    for frame in tts_frames(speech(media_dir, "speech_2.wav", 6.0), OUT_RATE, 1, 0.02):
        await gen.push_audio(frame)  # a long utterance, still being said when it is interrupted
    await out.wait(lambda: out.count(rtc.AudioFrame) >= 15, what="half a second of speech")
    cut = len(out.items)
    await gen.clear_buffer()
    await out.wait(lambda: out.count(rtc.VideoFrame, cut) >= 30, what="video after the interrupt")

    after = out.items[cut:]
    videos = [k for k, i in enumerate(after) if isinstance(i, rtc.VideoFrame)]
    late = [i for i in after[videos[3] :] if isinstance(i, rtc.AudioFrame)]  # after 3 more frames (100 ms)
    assert not late, f"{len(late)} audio frames of interrupted speech"
    assert not any(isinstance(i, AudioSegmentEnd) for i in after)  # the runner reports interruptions itself
    assert not any(f.speech for f in seen[-25:])  # idle, and still coming

    # The next utterance is whole: nothing of the interrupted one is left in the way.
    mark = len(out.items)
    again = speech(media_dir, "speech_1.wav", 1.0)
    for frame in tts_frames(again, OUT_RATE, 1, 0.02):
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())
    await out.wait(lambda: out.count(AudioSegmentEnd, mark) >= 1, what="the next utterance's end")
    said_s = sum(i.samples_per_channel for i in out.items[mark:] if isinstance(i, rtc.AudioFrame)) / OUT_RATE
    assert abs(said_s - again.size / SPEECH_RATE) <= 1 / FPS, said_s
    await out.stop()


# -- bad input -----------------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_no_server_is_unreachable_and_leaves_the_agent_alone() -> None:
    agent_session: AgentSession[None] = AgentSession()
    avatar = FacecastAvatarSession(server_url=closed_port_url())
    with pytest.raises(Unreachable):
        await avatar.start(agent_session, StandInRoom())  # type: ignore[arg-type]
    assert agent_session.output.audio is None
    await avatar.aclose()


async def test_unknown_avatar_is_not_found_with_the_servers_code(server_url: str) -> None:
    avatar = FacecastAvatarSession(server_url=server_url, avatar="0123456789abcdef")
    with pytest.raises(NotFound) as raised:
        await avatar.start(AgentSession(), StandInRoom())  # type: ignore[arg-type]
    assert raised.value.status == 404 and raised.value.code.endswith("not_found"), raised.value


async def test_a_server_that_goes_away_ends_the_frames(tmp_path: Path, media_dir: Path) -> None:
    server = ServerProcess(tmp_path)
    try:
        async with FacecastClient(server.url) as client:
            gen = FacecastVideoGenerator(LiveAvatar(client))
            await gen.start()
            out = Collected(gen)
            for frame in tts_frames(speech(media_dir, "speech_2.wav", 4.0), OUT_RATE, 1, 0.02):
                await gen.push_audio(frame)
            await out.wait(lambda: out.count(rtc.AudioFrame) >= 10, what="speech frames")
            server.stop()
            await asyncio.wait_for(out.task, 30)  # ends, without an error and without hanging
            assert gen.ended and isinstance(out.items[-1], AudioSegmentEnd)  # the cut-short segment ends
            await gen.push_audio(tts_frames(speech(media_dir, "speech_1.wav", 0.1), OUT_RATE, 1, 0.02)[0])
            await gen.clear_buffer()  # neither raises once the session is gone
            await gen.aclose()
    finally:
        server.stop()
