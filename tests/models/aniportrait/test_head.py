"""AniPortraitHead, the live session engine, on fixture A's tiny weights at 64x64 on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.config import RenderSettings, load_settings
from facecast.frames import VideoFrame, frame_samples
from facecast.models.aniportrait.head import AniPortraitHead
from facecast.models.aniportrait.streaming_audio import StreamingAudio2Mesh, StreamingAudio2Pose
from facecast.models.aniportrait.wav2vec import frame_count
from facecast.models.audio.decode import decode_audio
from facecast.models.avatar import Avatar
from facecast.server.engines import build_engine, shared_aniportrait
from facecast.server.errors import ApiError

SIZE = 64


@pytest.fixture(scope="module")
def avatar(fixture_a: Path) -> Avatar:
    """Fixture A's reference portrait with its MediaPipe mesh and matrix (no detection needed)."""
    lmk = np.load(fixture_a / "inputs" / "landmarks.npz")
    with Image.open(fixture_a / "inputs" / "ref_image.png") as img:
        image = np.asarray(img.convert("RGB"))
    return Avatar(
        id="fixtureA",
        image=image,
        landmarks=lmk["ref_lmks_478"],
        mesh=lmk["ref_lmks3d_468"],
        matrix=lmk["ref_trans_mat"],
    )


@pytest.fixture(scope="module")
def render(fixture_a: Path) -> RenderSettings:
    return RenderSettings(engine="aniportrait", size=SIZE, weights=str(fixture_a), device="cpu", hop=8)


@pytest.fixture(scope="module")
def speech(fixture_a: Path) -> np.ndarray:
    return decode_audio(fixture_a / "audio" / "speech.wav")


def make_head(avatar: Avatar, render: RenderSettings) -> AniPortraitHead:
    head = build_engine(avatar, "aniportrait", 30, render)
    assert isinstance(head, AniPortraitHead)
    return head


def push_frames(
    head: AniPortraitHead, audio: np.ndarray, first: int, count: int
) -> list[tuple[int, VideoFrame]]:
    """Push one video frame of audio at a time like the engine runner; → (push index, frame) pairs."""
    out = []
    for k in range(first, first + count):
        start, end = frame_samples(k, 30)
        chunk = audio[start:end] if start < audio.size else np.zeros(0, np.float32)
        chunk = np.pad(chunk, (0, end - start - chunk.size))
        frames = head.push(chunk)
        assert len(frames) <= 1
        out += [(k, f) for f in frames]
    return out


def test_frames_come_in_order_within_the_declared_lookahead(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    head = make_head(avatar, render)
    assert (head.fps, head.size) == (30, SIZE)
    assert head.lookahead_frames == 6 + 8  # audio look-ahead 0.2 s + one hop of window fill
    got = push_frames(head, speech, 0, 40)
    assert [f.index for _, f in got] == list(range(len(got))) and len(got) >= 40 - head.lookahead_frames
    for pushed, frame in got:  # frame k is out once audio up to frame k + 1 + lookahead has gone in
        assert pushed <= frame.index + head.lookahead_frames
        assert frame.image.shape == (SIZE, SIZE, 3) and frame.image.dtype == np.uint8
    speaking = [f.motion.speech for _, f in got if f.motion is not None]
    assert max(speaking) > 0.5
    rest = head.flush()
    assert [f.index for f in rest] == list(range(len(got), 40))
    head.close()


def test_interrupt_redraws_unshown_frames_with_a_relaxed_mouth(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    renderer, audio_model, _ = shared_aniportrait(render)
    head = AniPortraitHead(avatar, renderer, audio_model, size=SIZE, audio_block_frames=1)
    shown = [f for _, f in push_frames(head, speech, 0, 24)]
    head.interrupt()
    after = [f for _, f in push_frames(head, np.zeros(0, np.float32), 24, 24)]
    frames = shown + after
    assert [f.index for f in frames] == list(range(len(frames)))
    silenced = np.pad(speech, (0, 16000))[: frame_samples(48, 30)[0]]
    silenced[frame_samples(len(shown), 30)[0] :] = 0.0  # heard: silence from the first frame not shown
    reference = {m.index: m.mesh_offsets for m in StreamingAudio2Mesh(head.driver.model).push(silenced)}
    for frame in after:
        assert frame.motion is not None and frame.motion.speech == 0.0
        expected = reference[frame.index] + frame.motion.blink * head.rig.blink
        np.testing.assert_allclose(frame.motion.mesh_offsets, expected, atol=1e-3)
    head.close()


def test_flush_ends_a_clip_and_sessions_share_one_renderer(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    a, b = make_head(avatar, render), make_head(avatar, render)
    assert a.stream.engine is b.stream.engine  # type: ignore[attr-defined]
    assert a.driver.model is b.driver.model
    clip = speech[: 16000 // 2]
    frames = a.push(clip) + a.flush()
    assert [f.index for f in frames] == list(range(frame_count(clip.size)))
    a.close()
    b.close()


def test_audio2pose_drives_the_head_pose(avatar: Avatar, render: RenderSettings, speech: np.ndarray) -> None:
    with_pose = RenderSettings(**{**vars(render), "pose_style": 5})
    head = make_head(avatar, with_pose)
    assert head.pose_driver is not None and head.pose_driver.style_id == 5
    frames = head.push(speech) + head.flush()
    assert head.driver.block_frames == head.pose_driver.block_frames == 8  # the renderer's hop
    reference = StreamingAudio2Pose(head.pose_driver.model, style_id=5, block_frames=8)
    expected = dict(reference.push(speech) + reference.flush())
    assert [f.index for f in frames] == sorted(expected)
    for frame in frames:
        assert frame.motion is not None
        np.testing.assert_allclose(frame.motion.pose, expected[frame.index], atol=1e-5)
    head.close()
    with pytest.raises(ApiError, match="0..99"):
        build_engine(avatar, "aniportrait", 30, RenderSettings(**{**vars(render), "pose_style": 100}))


def test_engine_errors_are_one_clear_sentence(avatar: Avatar, render: RenderSettings, tmp_path: Path) -> None:
    with pytest.raises(ApiError, match="30 fps") as err:
        build_engine(avatar, "aniportrait", 25, render)
    assert err.value.status == 400
    missing = RenderSettings(engine="aniportrait", size=SIZE, weights=None)
    with pytest.raises(ApiError, match="--weights DIR") as err:
        build_engine(avatar, "aniportrait", 30, missing)
    assert err.value.code == "engine_unavailable"
    with pytest.raises(ApiError, match="does not exist"):
        build_engine(avatar, "aniportrait", 30, RenderSettings(weights=str(tmp_path / "none"), device="cpu"))
    with pytest.raises(ApiError, match="cannot load AniPortrait weights") as err:
        build_engine(
            avatar, "aniportrait", 30, RenderSettings(size=SIZE, weights=str(tmp_path), device="cpu")
        )
    assert err.value.status == 400


def test_shipped_configs_load() -> None:
    repo = Path(__file__).resolve().parents[3]
    gpu = load_settings(repo / "configs" / "aniportrait.yaml").render
    assert (gpu.engine, gpu.fps, gpu.size, gpu.steps, gpu.hop, gpu.guidance) == (
        "aniportrait",
        30,
        512,
        4,
        12,
        1.0,
    )
    tiny = load_settings(repo / "configs" / "aniportrait_tiny.yaml").render
    assert (tiny.engine, tiny.size, tiny.device, tiny.dtype) == ("aniportrait", 64, "cpu", "fp32")
