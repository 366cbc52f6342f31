"""facecast bench realism: the pure measures on synthetic landmarks and frames, then one short real render."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.bench import realism_measures as M
from facecast.models.face import portrait_checks as pc
from facecast.models.face import topology as T

SKIN = (200, 160, 140)  # saturated enough (S = 0.3) not to pass for teeth


def face_landmarks(ear: float = 0.3, mouth_gap: float = 0.0) -> np.ndarray:
    """(478, 2) pixel landmarks of a 200 px face: eyes 80 px apart (outer corners) with the given aspect
    ratio, an inner-lip ring centred on (100, 130), 60 px wide, `mouth_gap` px tall; the rest on a circle
    (the face's hull)."""
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    lm = np.stack([100 + 80 * np.cos(angles), 100 + 80 * np.sin(angles)], axis=1)
    for (c0, c1), pairs, x in ((*pc.RIGHT_EYE, 50.0), (*pc.LEFT_EYE, 130.0)):
        lm[c0], lm[c1] = (x, 60.0), (x + 20.0, 60.0)
        for k, (up, low) in enumerate(pairs):
            lm[up], lm[low] = (x + 5 + 5 * k, 60 - 10 * ear), (x + 5 + 5 * k, 60 + 10 * ear)
    xs = np.linspace(70, 130, len(T.INNER_LIP_UPPER))
    bulge = np.sin(np.linspace(0, np.pi, xs.size)) * mouth_gap / 2
    lm[T.INNER_LIP_UPPER] = np.stack([xs, 130 - bulge], axis=1)
    lm[T.INNER_LIP_LOWER[::-1]] = np.stack([xs, 130 + bulge], axis=1)
    lm[M.CHEEKS[0]], lm[M.CHEEKS[1]] = (60.0, 100.0), (140.0, 100.0)
    return lm


def skin_image() -> np.ndarray:
    return np.full((200, 200, 3), SKIN, np.uint8)


def test_eye_aspect_ratio_of_known_lids() -> None:
    assert M.eye_aspect_ratio(face_landmarks(ear=0.3)) == pytest.approx(0.3)
    assert M.eye_aspect_ratio(face_landmarks(ear=0.05)) == pytest.approx(0.05)


def test_blinks_counted_including_a_double_blink_and_a_noisy_one() -> None:
    def eyes(*parts: tuple[float, int]) -> list[float]:
        return [M.eye_aspect_ratio(face_landmarks(ear=e)) for e, n in parts for _ in range(n)]

    ear = np.array(
        eyes((0.3, 30), (0.06, 3), (0.3, 20))  # one blink, lids at 0.2 of open
        + eyes((0.09, 3), (0.3, 1), (0.09, 3), (0.3, 20))  # double: one frame really reopens
        + eyes((0.12, 2), (0.21, 1), (0.12, 2), (0.3, 20))  # one frame just over the threshold: one
        + eyes((0.3, 2), (0.15, 2), (0.3, 20))  # a short one, lids at half
    )
    ear[5] = np.nan  # a frame without a face is not a blink
    blinks = M.find_blinks(ear)
    assert [(b.start, b.end) for b in blinks] == [(30, 33), (53, 56), (57, 60), (80, 85), (107, 109)]
    assert blinks[0].closed_ratio == pytest.approx(0.2)
    assert blinks[2].closed_ratio == pytest.approx(0.3)
    assert M.open_eye_level(ear) == pytest.approx(0.3)
    assert M.find_blinks(np.full(50, 0.3)) == []
    assert M.find_blinks(np.full(5, np.nan)) == []


def test_cavity_ratio_dark_vs_bright_mouth() -> None:
    import cv2

    lm = face_landmarks(mouth_gap=24.0)
    ring = np.round(lm[T.INNER_LIP_RING]).astype(np.int32)
    ratios = {}
    for name, colour in (("dark", (30, 20, 20)), ("bright", (250, 250, 250))):
        image = skin_image()
        cv2.fillPoly(image, [ring], colour)
        ratios[name] = M.cavity_ratio(image, lm)
    skin_y = 0.299 * SKIN[0] + 0.587 * SKIN[1] + 0.114 * SKIN[2]
    # the mask stays inside the ring, so the skin-coloured lips around it do not leak in
    assert ratios["dark"] == pytest.approx((0.299 * 30 + 0.587 * 20 + 0.114 * 20) / skin_y, abs=0.02)
    assert ratios["bright"] > 1.2
    assert np.isnan(M.cavity_ratio(skin_image(), face_landmarks(mouth_gap=0.0)))  # closed: no interior


def test_cavity_darkness_takes_the_widest_open_frames_only() -> None:
    openings = np.concatenate([np.full(85, 0.03), np.full(15, 0.2)])
    ratios = np.concatenate([np.full(85, 0.9), np.full(15, 0.4)])
    median, used = M.cavity_darkness(ratios, openings)
    assert median == pytest.approx(0.4) and used.size == 15
    # a mouth that never opens past 0.08 has no interior to judge
    assert np.isnan(M.cavity_darkness(ratios, np.full(100, 0.05))[0])


def test_teeth_fraction_white_strip_vs_none() -> None:
    lm = face_landmarks(mouth_gap=0.0)
    image = skin_image()
    assert M.teeth_fraction(image, lm) == 0.0
    image[127:134, 70:131] = (245, 245, 240)  # teeth showing between the closed lips
    assert M.teeth_fraction(image, lm) > 0.8
    # a pale lip line that is still saturated (pink) is not teeth
    image[127:134, 70:131] = (240, 150, 160)
    assert M.teeth_fraction(image, lm) == 0.0


def test_silent_frames_keep_away_from_speech() -> None:
    rms = np.concatenate([np.full(30, 0.1), np.zeros(30), np.full(5, 0.001), np.full(10, 0.01)])
    silent = M.silent_frames(M.rms_dbfs(rms), fps=30.0)
    # -60 dBFS is silence, -40 is not; 0.3 s = 9 frames of margin on either side of the speech
    assert not silent[:39].any() and silent[39:56].all() and not silent[56:].any()
    assert not M.silent_frames(np.full(10, np.nan), 30.0).any()


def test_short_real_render_gives_sane_figures(media_dir: Path, tmp_path: Path) -> None:
    from facecast.bench.realism import render_figures, summarise, track_frames
    from facecast.cli.render import render_warp
    from facecast.models.audio.decode import decode_audio
    from facecast.models.avatar import AvatarStore

    speech = media_dir / "speech_1.wav"
    audio = np.concatenate([decode_audio(speech)[:32000], np.zeros(16000, np.float32)])  # 2 s + 1 s silence
    avatar = AvatarStore(tmp_path / "avatars").resolve(str(media_dir / "grace_hopper_512.png"))
    video = tmp_path / "render.mp4"
    render_warp(avatar, audio, video, fps=30)
    track = track_frames(video)
    assert track.opening.shape == (90,) and np.isfinite(track.opening).all()
    assert 0.15 < M.open_eye_level(track.ear) < 0.5
    assert (track.rms_db[:60] > M.SILENCE_DBFS).mean() > 0.5 and (track.rms_db[-10:] < M.SILENCE_DBFS).all()
    fig = summarise([render_figures(video, avatar.meta["name"], speech, speech.name)])
    assert fig["face_ratio"] == 1.0 and fig["duration_s"] == pytest.approx(3.0)
    assert fig["rest_frames"] >= 10 and 0 <= fig["rest_opening"] < 0.05 and 0 <= fig["rest_teeth"] <= 1
    assert fig["corr_lag0"] is not None and -1 <= fig["corr_lag0"] <= 1 and abs(fig["best_lags"][0]) <= 6
    assert fig["viseme_ratio"] is None  # speech_1 has no alignment
    assert fig["cavity"] is None or 0 < fig["cavity"] < 3
    assert 0 < fig["ear_min_ratio"] <= 1
    assert fig["closed_ratio_max"] is None or 0 < fig["closed_ratio_max"] < 1


def test_cli_registers_realism() -> None:
    from facecast.__main__ import build_parser

    args = build_parser().parse_args(["bench", "realism", "media", "--json", "out.json", "--fps", "25"])
    assert args.media == Path("media") and args.json == Path("out.json") and args.fps == 25
