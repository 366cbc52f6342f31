"""The test signal and the pure analysis of `facecast bench av_playout` (numpy only, no I/O).

Signal: bursts of a synthetic open vowel (a glottal pulse train through three formant resonators),
silence in between. Burst i starts at LEAD_IN_S + i·period + (i mod 7)/7 of a video frame, so the
onsets fall at every seventh of a frame interval and frame quantisation averages out.

Analysis: audio onsets where 1 ms RMS at playout crosses a threshold after silence; video onsets
where the mouth opening of displayed frames reaches the midpoint between rest and peak; per-burst
offset = video onset - audio onset (negative: the mouth opens before the sound is heard).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F0_HZ = 120.0  # glottal pulse rate: a low male voice
FORMANTS_HZ = ((700.0, 90.0), (1200.0, 110.0), (2600.0, 160.0))  # (centre, bandwidth) of an open /a/
BURST_S = 0.35
PERIOD_S = 1.2  # onset to onset: 0.85 s of silence lets the mouth close fully in between
LEAD_IN_S = 1.0  # silence before the first burst (and the page's recording starts before it)
TAIL_S = 1.5  # silence after the last burst: its mouth closes and late frames arrive
FADE_OUT_S = 0.02  # burst end ramp: no click, the onset alone is sharp
SHIFT_STEPS = 7  # burst i is shifted by (i mod 7)/7 of a video frame
PEAK_LEVEL = 0.5  # burst peak amplitude (full scale 1.0)

SILENCE_BEFORE_ONSET_S = 0.3  # an audio onset needs this much sub-threshold signal before it
AUDIO_THRESHOLD = 0.1  # of the bursts' loudness (95th percentile of 1 ms RMS)
MATCH_WINDOW_S = 0.35  # a detected onset belongs to burst i if within this of its expected time
MIN_MOUTH_SWING = 0.02  # peak - rest opening (/ eye span) below which a burst shows no mouth motion


def burst_onsets_s(count: int, fps: int, period_s: float = PERIOD_S) -> np.ndarray:
    """(count,) onset times in seconds from the start of the train."""
    i = np.arange(count)
    return LEAD_IN_S + i * period_s + (i % SHIFT_STEPS) / SHIFT_STEPS / fps


def train_duration_s(onsets_s: np.ndarray) -> float:
    return float(onsets_s[-1]) + BURST_S + TAIL_S if onsets_s.size else LEAD_IN_S + TAIL_S


def vowel_burst(rate: int, duration_s: float = BURST_S) -> np.ndarray:
    """(N,) float32 open vowel whose first sample is the first glottal pulse (a sharp onset)."""
    from scipy.signal import lfilter

    n = int(round(duration_s * rate))
    pulses = np.zeros(n, np.float64)
    pulses[np.round(np.arange(0.0, duration_s, 1.0 / F0_HZ) * rate).astype(int)] = 1.0
    # A glottal pulse is not an impulse: a short decaying shape tilts the spectrum down like a voice.
    voice = lfilter([1.0], [1.0, -0.9], pulses)
    for centre, bandwidth in FORMANTS_HZ:  # two-pole resonators in cascade, unity gain at DC
        r = np.exp(-np.pi * bandwidth / rate)
        a = [1.0, -2.0 * r * np.cos(2.0 * np.pi * centre / rate), r * r]
        voice = lfilter([sum(a)], a, voice)
    fade = int(FADE_OUT_S * rate)
    voice[-fade:] *= np.linspace(1.0, 0.0, fade)
    voice *= PEAK_LEVEL / np.abs(voice).max()
    return voice.astype(np.float32)


def burst_train(rate: int, onsets_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(samples float32, onset sample indices): the bursts at `onsets_s` in silence."""
    burst = vowel_burst(rate)
    total = int(np.ceil(train_duration_s(onsets_s) * rate))
    samples = np.zeros(total, np.float32)
    starts = np.round(onsets_s * rate).astype(np.int64)
    for start in starts:
        samples[start : start + burst.size] = burst
    return samples, starts


@dataclass(frozen=True)
class AudioBlocks:
    """Loudness at playout: times_s (N,) playout time of each block's first sample; rms (N,)."""

    times_s: np.ndarray
    rms: np.ndarray


def audio_threshold(rms: np.ndarray) -> float:
    """A level between silence and the bursts: a fraction of burst loudness, above the noise floor."""
    loud = float(np.percentile(rms, 95)) if rms.size else 0.0
    floor = float(np.median(rms)) if rms.size else 0.0  # mostly silence: bursts fill ~30% of the time
    return max(AUDIO_THRESHOLD * loud, 4.0 * floor, 1e-4)


def detect_audio_onsets(blocks: AudioBlocks) -> np.ndarray:
    """Times of blocks above threshold after at least SILENCE_BEFORE_ONSET_S of blocks below it."""
    threshold = audio_threshold(blocks.rms)
    onsets: list[float] = []
    last_loud = -np.inf
    for t, level in zip(blocks.times_s, blocks.rms, strict=True):
        if level >= threshold:
            if t - last_loud >= SILENCE_BEFORE_ONSET_S:
                onsets.append(float(t))
            last_loud = t
    return np.asarray(onsets, np.float64)


def match_onsets(detected_s: np.ndarray, expected_s: np.ndarray) -> np.ndarray:
    """(len(expected),) the detected onset belonging to each expected one, nan where none.

    expected_s are send times on the same clock; the unknown (slowly varying) latency is tracked:
    it starts as first detected minus first expected and follows each match.
    """
    out = np.full(expected_s.shape, np.nan)
    if not detected_s.size or not expected_s.size:
        return out
    latency = float(detected_s[0] - expected_s[0])
    for i, sent in enumerate(expected_s):
        gap = np.abs(detected_s - (sent + latency))
        j = int(np.argmin(gap))
        if gap[j] <= MATCH_WINDOW_S:
            out[i] = detected_s[j]
            latency = float(detected_s[j] - sent)
    return out


def crossing_frame(display_s: np.ndarray, opening: np.ndarray, audio_onset: float, period_s: float) -> int:
    """Index of the first frame whose mouth opening reaches the midpoint of rest and peak; -1 if none.

    Looks at frames displayed within half a burst period of the audio onset (rest: their 10th
    percentile, peak: their maximum); -1 also when the mouth hardly moves or the first frame looked
    at is already open (the rising edge is not in view).
    """
    near = np.flatnonzero(
        (display_s >= audio_onset - 0.5 * period_s)
        & (display_s < audio_onset + 0.5 * period_s)
        & np.isfinite(opening)
    )
    if near.size < 4:
        return -1
    values = opening[near]
    rest, peak = float(np.percentile(values, 10)), float(values.max())
    if peak - rest < MIN_MOUTH_SWING:
        return -1
    first = int(np.argmax(values >= 0.5 * (rest + peak)))
    return int(near[first]) if first > 0 else -1


def video_onsets(
    display_s: np.ndarray,
    presented: np.ndarray,
    opening: np.ndarray,
    audio_onsets_s: np.ndarray,
    period_s: float,
) -> tuple[np.ndarray, int]:
    """(video onset per burst, how many were left out because the frame before it was not captured).

    The onset is the crossing frame's display time: frames are held on screen, so it is never an
    interpolation between two frames. When the page missed the callback of the frame just before
    (presentedFrames jumps by more than one), that unseen frame may have been the first open one:
    the burst is left out (nan) rather than measured a frame late.
    """
    out = np.full(audio_onsets_s.shape, np.nan)
    skipped = 0
    for i, audio_onset in enumerate(audio_onsets_s):
        if not np.isfinite(audio_onset):
            continue
        j = crossing_frame(display_s, opening, float(audio_onset), period_s)
        if j < 1:
            continue
        if presented[j] - presented[j - 1] > 1:
            skipped += 1
            continue
        out[i] = display_s[j]
    return out, skipped


def spread(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max() - finite.min()) if finite.size else float("nan")


def median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")
