"""AniPortraitEngine, the live session engine, on fixture A's tiny weights at 64x64 on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.config import RenderSettings, load_settings
from facecast.engine import EngineError, create_engine
from facecast.frames import EngineFrame, clip_block, frame_samples
from facecast.models.aniportrait.networks.wav2vec import frame_count
from facecast.models.aniportrait.streaming.audio import StreamingAudio2Mesh, StreamingAudio2Pose
from facecast.models.aniportrait.streaming.engine import AniPortraitEngine, shared_models
from facecast.models.audio.decode import decode_audio
from facecast.models.avatar import Avatar

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


def make_engine(avatar: Avatar, render: RenderSettings) -> AniPortraitEngine:
    engine = create_engine("aniportrait", avatar, 30, render)
    assert isinstance(engine, AniPortraitEngine)
    return engine


def push_frames(
    engine: AniPortraitEngine, audio: np.ndarray, count: int, generation: int = 0
) -> list[tuple[int, EngineFrame]]:
    """Push `count` more frames of `audio` one block at a time, like the engine runner; → (blocks pushed, frame)."""
    out = []
    for _ in range(count):
        block = clip_block(audio, engine.frames_pushed, 30)
        block.generation = generation
        engine.push_audio(block)
        frames = engine.pop_frames(1)
        out += [(engine.frames_pushed, f) for f in frames]
    return out


def clip_frames(engine: AniPortraitEngine, audio: np.ndarray) -> list[EngineFrame]:
    """Every frame of a clip: its audio, then silence until the last frame that shows it is out."""
    frames: list[EngineFrame] = []
    while len(frames) < frame_count(audio.size):
        frames += [f for _, f in push_frames(engine, audio, 1)]
    return frames


def test_frames_come_in_order_within_the_declared_lookahead(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    engine = make_engine(avatar, render)
    assert (engine.fps, engine.size) == (30, SIZE)
    assert engine.lookahead_frames == 6 + 8  # audio look-ahead 0.2 s + one hop of window fill
    got = push_frames(engine, speech, 40)
    assert [f.index for _, f in got] == list(range(len(got))) and len(got) >= 40 - engine.lookahead_frames
    for pushed, frame in got:  # frame k is out once audio up to frame k + 1 + lookahead has gone in
        assert pushed <= frame.index + 1 + engine.lookahead_frames
        assert (
            frame.image is not None and frame.image.shape == (SIZE, SIZE, 3) and frame.image.dtype == np.uint8
        )
        np.testing.assert_array_equal(frame.audio.samples, clip_block(speech, frame.index, 30).samples)
    speaking = [f.motion.speech for _, f in got if f.motion is not None]
    assert max(speaking) > 0.5
    with pytest.raises(ValueError, match="frame 3 pushed"):
        engine.push_audio(clip_block(speech, 3, 30))
    engine.close()


def test_interrupt_redraws_unshown_frames_with_a_relaxed_mouth(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    renderer, audio_model, _ = shared_models(render)
    engine = AniPortraitEngine(avatar, renderer, audio_model, size=SIZE, audio_block_frames=1)
    shown = [f for _, f in push_frames(engine, speech, 24)]
    engine.clear_buffer(1)
    after = [f for _, f in push_frames(engine, np.zeros(0, np.float32), 24, generation=1)]
    frames = shown + after
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.generation == 0 for f in shown) and all(f.generation == 1 for f in after)
    assert not any(f.audio.samples.any() for f in after)  # held audio became silence
    silenced = np.pad(speech, (0, 16000))[: frame_samples(48, 30)[0]]
    silenced[frame_samples(len(shown), 30)[0] :] = 0.0  # heard: silence from the first frame not shown
    reference = {m.index: m.mesh_offsets for m in StreamingAudio2Mesh(engine.driver.model).push(silenced)}
    for frame in after:
        assert frame.motion is not None and frame.motion.speech == 0.0
        expected = reference[frame.index] + frame.motion.blink * engine.rig.blink
        np.testing.assert_allclose(frame.motion.mesh_offsets, expected, atol=1e-3)
    engine.close()


def test_a_clip_ends_with_silence_and_sessions_share_one_renderer(
    avatar: Avatar, render: RenderSettings, speech: np.ndarray
) -> None:
    a, b = make_engine(avatar, render), make_engine(avatar, render)
    assert a.stream.engine is b.stream.engine
    assert a.driver.model is b.driver.model
    clip = speech[: 16000 // 2]
    frames = clip_frames(a, clip)
    assert [f.index for f in frames] == list(range(frame_count(clip.size)))
    a.close()
    b.close()


def test_audio2pose_drives_the_head_pose(avatar: Avatar, render: RenderSettings, speech: np.ndarray) -> None:
    with_pose = RenderSettings(**{**vars(render), "pose_style": 5})
    engine = make_engine(avatar, with_pose)
    assert engine.pose_driver is not None and engine.pose_driver.style_id == 5
    frames = clip_frames(engine, speech)
    assert engine.driver.block_frames == engine.pose_driver.block_frames == 8  # the renderer's hop
    reference = StreamingAudio2Pose(engine.pose_driver.model, style_id=5, block_frames=8)
    pushed = np.concatenate([clip_block(speech, k, 30).samples for k in range(engine.frames_pushed)])
    expected = dict(reference.push(pushed))  # the same audio as the engine got: the clip, then silence
    assert [f.index for f in frames] == list(range(frame_count(speech.size)))
    for frame in frames:
        assert frame.motion is not None
        np.testing.assert_allclose(frame.motion.pose, expected[frame.index], atol=1e-5)
    engine.close()
    with pytest.raises(EngineError, match="0..99"):
        create_engine("aniportrait", avatar, 30, RenderSettings(**{**vars(render), "pose_style": 100}))


def test_engine_errors_are_one_clear_sentence(avatar: Avatar, render: RenderSettings, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="30 fps") as err:
        create_engine("aniportrait", avatar, 25, render)
    assert err.value.code == "bad_fps"
    missing = RenderSettings(engine="aniportrait", size=SIZE, weights=None)
    with pytest.raises(EngineError, match="--weights DIR") as err:
        create_engine("aniportrait", avatar, 30, missing)
    assert err.value.code == "engine_unavailable"
    with pytest.raises(EngineError, match="does not exist"):
        create_engine("aniportrait", avatar, 30, RenderSettings(weights=str(tmp_path / "none"), device="cpu"))
    with pytest.raises(EngineError, match="cannot load AniPortrait weights") as err:
        create_engine(
            "aniportrait", avatar, 30, RenderSettings(size=SIZE, weights=str(tmp_path), device="cpu")
        )
    assert err.value.code == "engine_unavailable"


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
