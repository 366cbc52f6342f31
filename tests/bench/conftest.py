"""Session-cached synthetic clips with known lip sync for the bench tools (built once, ~75 frames each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from synth_talking import (
    FPS,
    SAMPLE_RATE,
    SIZE,
    MouthOpener,
    frame_envelope,
    syllable_envelope,
    voiced_audio,
    write_clip,
)

DURATION_S = 3.0
FRAMES = int(DURATION_S * FPS)


@pytest.fixture(scope="session")
def opener(media_dir: Path) -> MouthOpener:
    from facecast.bench.mouth_track import MouthMeter

    image = cv2.imread(str(media_dir / "grace_hopper_512.png"))
    image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    with MouthMeter() as meter:
        landmarks = meter.landmarks(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    assert landmarks is not None
    return MouthOpener(image, landmarks)


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, np.ndarray]:
    """(audio samples, per-frame envelope) of the synthetic speech."""
    env = syllable_envelope(DURATION_S, seed=7)
    return voiced_audio(env, seed=7), frame_envelope(env, FRAMES)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench_clips")


@pytest.fixture(scope="session")
def talking_clip(
    opener: MouthOpener, speech: tuple[np.ndarray, np.ndarray], clip_dir: Path
) -> Callable[[int, float], Path]:
    """talking_clip(video_delay_frames, audio_offset_s): the mouth follows the audio as placed on the
    timeline, then `video_delay_frames` later; built once per argument pair."""
    audio, envelope = speech
    cache: dict[tuple[int, float], Path] = {}

    def build(video_delay_frames: int, audio_offset_s: float = 0.0) -> Path:
        key = (video_delay_frames, audio_offset_s)
        if key not in cache:
            shift = video_delay_frames + round(audio_offset_s * FPS)
            amounts = (
                np.concatenate([np.zeros(max(shift, 0)), envelope])[:FRAMES]
                if shift >= 0
                else envelope[-shift:]
            )
            amounts = np.pad(amounts, (0, FRAMES - amounts.shape[0]))
            frames = [opener.render(float(a)) for a in amounts]
            path = clip_dir / f"talk_delay{video_delay_frames}_offset{audio_offset_s:.2f}.mp4"
            cache[key] = write_clip(path, frames, audio, audio_offset_s)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def static_clip(opener: MouthOpener, speech: tuple[np.ndarray, np.ndarray], clip_dir: Path) -> Path:
    return write_clip(clip_dir / "static.mp4", [opener.render(0.0)] * FRAMES, speech[0])


@pytest.fixture(scope="session")
def faceless_clip(speech: tuple[np.ndarray, np.ndarray], clip_dir: Path) -> Path:
    ramp = np.linspace(40, 200, SIZE, dtype=np.uint8)
    wall = np.dstack([np.tile(ramp, (SIZE, 1))] * 3)
    return write_clip(clip_dir / "faceless.mp4", [wall] * FRAMES, speech[0])


@pytest.fixture(scope="session")
def silent_clip(opener: MouthOpener, clip_dir: Path) -> Path:
    return write_clip(clip_dir / "silent.mp4", [opener.render(0.0)] * 10, None)


# Viseme clip: words "M AA1" / "B AE" / "P AH0" ... each phone 0.12-0.2 s, as a forced aligner writes them.
VISEME_WORDS = [
    ["M", "AA1"],
    ["B", "AE1"],
    ["P", "AH0"],
    ["M", "AO1"],
    ["B", "AW1"],
    ["P", "AY1"],
    ["M", "AA2"],
]


@pytest.fixture(scope="session")
def viseme_alignment(clip_dir: Path) -> Path:
    words, t = [], 0.2
    for phones in VISEME_WORDS:
        entries = []
        begin = t
        for label in phones:
            duration = 0.14 if label in {"M", "B", "P"} else 0.2
            entries.append({"b": round(t, 3), "d": duration, "p": 1.0, "t": label})
            t += duration
        words.append({"b": round(begin, 3), "d": round(t - begin, 3), "p": 1.0, "t": "w", "w": entries})
    doc = {"b": 0.0, "d": round(t + 0.2, 3), "p": 1.0, "t": "synthetic", "w": words}
    path = clip_dir / "visemes.phone.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="session")
def viseme_clip(opener: MouthOpener, viseme_alignment: Path, clip_dir: Path) -> Callable[..., Path]:
    """viseme_clip(lips_close_on_bilabials, speech_start_s=0.0): mouth closed on P/B/M and open on
    vowels, or the reverse; the speech (audio and mouth) starts at speech_start_s.

    The audio is equally loud on every phone, so loudness alone cannot tell the two apart."""
    doc = json.loads(viseme_alignment.read_text())
    phones = [p for word in doc["w"] for p in word["w"]]
    frames_n = int(np.ceil(doc["d"] * FPS))
    audio = voiced_audio(np.full(frames_n * SAMPLE_RATE // FPS, 0.8), seed=3)
    cache: dict[tuple[bool, float], Path] = {}

    def build(lips_close_on_bilabials: bool, speech_start_s: float = 0.0) -> Path:
        key = (lips_close_on_bilabials, speech_start_s)
        if key not in cache:
            amounts = np.zeros(frames_n + round(speech_start_s * FPS))
            for p in phones:
                bilabial = p["t"] in {"M", "B", "P"}
                amount = 0.05 if bilabial == lips_close_on_bilabials else 0.8
                begin = p["b"] + speech_start_s
                amounts[round(begin * FPS) : round((begin + p["d"]) * FPS)] = amount
            name = f"visemes_{'good' if lips_close_on_bilabials else 'reversed'}_{speech_start_s:.2f}.mp4"
            frames = [opener.render(a) for a in amounts]
            cache[key] = write_clip(clip_dir / name, frames, audio, speech_start_s)
        return cache[key]

    return build
