from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.frames import AUDIO_RATE_HZ
from facecast.models.audio.decode import decode_audio
from facecast.models.audio.dsp_driver import DspMotionDriver
from facecast.models.avatar import Avatar
from facecast.models.face.rig import FaceRig


@pytest.fixture(scope="module")
def rig(grace: Avatar) -> FaceRig:
    return FaceRig(grace.mesh)


def _harmonic(f0: float, seconds: float, cutoff: float, formants: tuple[float, ...] = ()) -> np.ndarray:
    """A voiced-like signal: harmonics of f0, either low-passed (nasal murmur) or with formant peaks (vowel)."""
    t = np.arange(int(seconds * AUDIO_RATE_HZ)) / AUDIO_RATE_HZ
    sig = np.zeros_like(t)
    for h in range(1, int(4000 / f0)):
        f = h * f0
        gain = 1.0 / h if f < cutoff else 0.0
        for fm in formants:
            gain += 2.0 * np.exp(-(((f - fm) / 120.0) ** 2))
        sig += gain * np.sin(2 * np.pi * f * t)
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


def _jaw(frames: list) -> np.ndarray:
    return np.array([-f.mesh_offsets[14, 1] for f in frames])


def test_lookahead_and_frame_count(rig: FaceRig) -> None:
    driver = DspMotionDriver(rig, fps=30)
    assert driver.lookahead_s <= 0.060
    audio = np.zeros(AUDIO_RATE_HZ * 2 + 123, np.float32)
    frames = driver.push(audio) + driver.flush()
    assert [f.index for f in frames] == list(range(61))  # ceil(2.0077 s * 30)


def test_chunk_size_does_not_matter(rig: FaceRig, media_dir: Path) -> None:
    audio = decode_audio(media_dir / "goforward.wav")
    whole = DspMotionDriver(rig).push(audio)
    driver = DspMotionDriver(rig)
    rng = np.random.default_rng(3)
    pieces, pos = [], 0
    while pos < len(audio):
        n = int(rng.integers(1, 2000))
        pieces += driver.push(audio[pos : pos + n])
        pos += n
    assert len(pieces) == len(whole)
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(a.mesh_offsets, b.mesh_offsets)


def test_silence_is_a_closed_relaxed_mouth(rig: FaceRig) -> None:
    frames = DspMotionDriver(rig).push(np.zeros(AUDIO_RATE_HZ, np.float32))
    for f in frames:
        np.testing.assert_allclose(f.mesh_offsets, rig.rest.astype(np.float32), atol=1e-6)
        assert f.speech == 0.0


def test_open_vowel_opens_and_nasal_murmur_closes(rig: FaceRig) -> None:
    silence = np.zeros(AUDIO_RATE_HZ // 2, np.float32)
    vowel = _harmonic(120, 0.5, cutoff=300, formants=(750, 1200))  # "ah": F1 750, F2 1200
    nasal = _harmonic(120, 0.5, cutoff=300)  # "mm": energy only below 300 Hz, as loud
    driver = DspMotionDriver(rig)
    frames = driver.push(np.concatenate([silence, vowel, silence, nasal, silence])) + driver.flush()
    jaw = _jaw(frames)
    seg = lambda start_s: jaw[int((start_s + 0.15) * 30) : int((start_s + 0.4) * 30)]  # noqa: E731
    assert seg(0.0).max() < 0.05
    assert seg(0.5).mean() > 0.6  # cm at the lower lip
    assert seg(1.5).mean() < 0.2 * seg(0.5).mean()


def test_spread_and_rounding_follow_the_second_formant(rig: FaceRig) -> None:
    ee = _harmonic(120, 0.6, cutoff=300, formants=(300, 2300))
    oo = _harmonic(120, 0.6, cutoff=300, formants=(300, 850))
    corner_x = lambda fr: np.mean([f.mesh_offsets[291, 0] - f.mesh_offsets[61, 0] for f in fr[8:15]])  # noqa: E731
    assert corner_x(DspMotionDriver(rig).push(ee)) > 0.1  # corners apart
    assert corner_x(DspMotionDriver(rig).push(oo)) < -0.1  # corners together


def test_interrupt_relaxes_the_next_frame(rig: FaceRig) -> None:
    driver = DspMotionDriver(rig)
    vowel = _harmonic(120, 1.0, cutoff=300, formants=(750, 1200))
    shown = driver.push(vowel[: AUDIO_RATE_HZ // 2])
    assert _jaw(shown)[-1] > 0.5
    driver.push(vowel[AUDIO_RATE_HZ // 2 :])  # pushed ahead of what is shown
    driver.interrupt()
    after = driver.push(np.zeros(AUDIO_RATE_HZ // 10, np.float32))
    assert after[0].index == shown[-1].index + 1 or after[0].index > shown[-1].index
    assert _jaw(after).max() < 0.02


def _hiss(seconds: float, amplitude: float) -> np.ndarray:
    """Noise above 3 kHz (a fricative's frication), at a given amplitude."""
    rng = np.random.default_rng(0)
    spec = np.fft.rfft(rng.standard_normal(int(seconds * AUDIO_RATE_HZ)))
    spec[np.fft.rfftfreq(int(seconds * AUDIO_RATE_HZ), 1 / AUDIO_RATE_HZ) < 3000] = 0
    noise = np.fft.irfft(spec, int(seconds * AUDIO_RATE_HZ))
    return (amplitude * noise / np.abs(noise).max()).astype(np.float32)


def test_a_weak_hiss_tucks_the_lower_lip_and_a_loud_one_does_not(rig: FaceRig) -> None:
    """After a vowel, faint frication reads as F/V (lower lip up and back), a loud one as S (teeth together)."""
    vowel = _harmonic(120, 0.5, cutoff=300, formants=(750, 1200))
    tuck = lambda fr: -np.mean([f.mesh_offsets[17, 2] for f in fr[22:28]])  # noqa: E731 - lower lip back
    weak = DspMotionDriver(rig).push(np.concatenate([vowel, _hiss(0.4, 0.03)]))  # 20 dB under the vowel
    loud = DspMotionDriver(rig).push(np.concatenate([vowel, _hiss(0.4, 0.3)]))
    assert tuck(weak) > 0.08  # cm
    assert tuck(loud) < 0.5 * tuck(weak)
