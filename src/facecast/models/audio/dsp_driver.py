"""The default motion driver: speech → mouth shapes by signal analysis, no model weights.

Language-independent cues, per 10 ms hop of a 25 ms Hann window:
- loudness of the 300–2500 Hz band (where open vowels put F1/F2) against a running peak → jaw;
- nasal murmur / voice bar (energy below 300 Hz dominating the formant band, as in M, N, B) → lips
  pressed, jaw closed: bilabials close the mouth even though they are loud;
- spectral centroid of the formant band (high F2: "ee", low F2: "oo") → spread vs rounding;
- fricative noise above 3 kHz dominating → teeth nearly together; when that noise is weak against the
  speech's loudness (F, V, TH rather than S, SH) the lower lip also tucks under the upper teeth.
Frame k (30 fps) averages the hops around its interval shifted by SHIFT_S into the future, so the
mouth leads the sound slightly, as real articulation does. Look-ahead: SHIFT_S + half a window.
"""

from __future__ import annotations

import math

import numpy as np

from facecast.frames import AUDIO_RATE_HZ, MotionFrame, frame_start_sample
from facecast.models.face.rig import Expression, FaceRig

HOP = 160  # 10 ms
WIN = 400  # 25 ms
SHIFT_S = 0.020  # mouth leads the audio by 20 ms
NFFT = 512
MAX_JAW_CM = 1.3
PEAK_DECAY_DB_PER_HOP = 0.015  # running loudness peak forgets at 1.5 dB/s
DYNAMIC_RANGE_DB = 32.0
SILENCE_DBFS = -55.0
# Band power of a full-scale sine in these units (Parseval with a Hann window), so levels read as dBFS.
FULL_SCALE_SINE_POWER = (NFFT / 2) * (0.375 * WIN) * 0.5


class DspMotionDriver:
    """Streaming audio (float32 mono 16 kHz, any chunk size) → MotionFrames at `fps`. Deterministic."""

    def __init__(self, rig: FaceRig, fps: int = 30) -> None:
        self.rig = rig
        self.fps = fps
        self.shift = int(round(SHIFT_S * AUDIO_RATE_HZ))
        self.lookahead_s = (self.shift + WIN // 2) / AUDIO_RATE_HZ
        self.lookahead_frames = math.ceil(self.lookahead_s * fps)
        freqs = np.fft.rfftfreq(NFFT, 1.0 / AUDIO_RATE_HZ)
        self._window = np.hanning(WIN).astype(np.float32)
        self._low = (freqs >= 70) & (freqs < 300)
        self._mid = (freqs >= 300) & (freqs < 2500)
        self._high = freqs >= 3000
        self._f2band = (freqs >= 700) & (freqs < 3000)
        self._f2freqs = freqs[self._f2band]
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to sample 0 and a relaxed closed mouth."""
        self._buf = np.zeros(0, np.float32)  # audio from absolute sample self._buf_start
        self._buf_start = 0
        self._pushed = 0
        self._hops: list[np.ndarray] = []  # per hop: [jaw, spread, round, press, fv, speech]
        self._hop0 = 0  # absolute index of self._hops[0]
        self._next_frame = 0
        self._peak_db = -20.0
        self._state = np.zeros(6, np.float64)

    @property
    def next_frame(self) -> int:
        return self._next_frame

    def push(self, audio: np.ndarray) -> list[MotionFrame]:
        audio = np.asarray(audio, np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, audio])
        self._pushed += audio.size
        return self._emit(self._pushed)

    def flush(self) -> list[MotionFrame]:
        """End of stream: emit every frame that has started, padding the audio with silence."""
        last_frame_end = frame_start_sample(math.ceil(self._pushed * self.fps / AUDIO_RATE_HZ), self.fps)
        pad = last_frame_end + self.shift + WIN - self._pushed
        self._buf = np.concatenate([self._buf, np.zeros(max(0, pad), np.float32)])
        frames = self._emit(self._pushed + max(0, pad), limit=last_frame_end)
        self._pushed += max(0, pad)
        return frames

    def interrupt(self) -> None:
        """Replace audio pushed but not yet shown with silence and relax the mouth at once."""
        cut = frame_start_sample(self._next_frame, self.fps)
        first_hop = max(0, (cut + self.shift - WIN // 2 - HOP // 2) // HOP)
        del self._hops[max(0, first_hop - self._hop0) :]
        keep = max(0, cut - self._buf_start)
        self._buf[keep:] = 0.0
        self._state[:] = 0.0

    def _hop_features(self, center: int) -> np.ndarray:
        """Smoothed [jaw, spread, round, press, fv, speech] for the hop centred at absolute sample `center`."""
        start = center - WIN // 2 - self._buf_start
        seg = self._buf[max(0, start) : start + WIN]
        if start < 0:
            seg = np.concatenate([np.zeros(-start, np.float32), seg])
        spec = np.abs(np.fft.rfft(seg * self._window, NFFT)) ** 2 + 1e-12
        e_low, e_mid, e_high = spec[self._low].sum(), spec[self._mid].sum(), spec[self._high].sum()
        mid_db = 10.0 * math.log10(e_mid / FULL_SCALE_SINE_POWER + 1e-12)  # ≈ dBFS
        self._peak_db = max(mid_db, self._peak_db - PEAK_DECAY_DB_PER_HOP)
        floor = max(self._peak_db - DYNAMIC_RANGE_DB, SILENCE_DBFS)
        level = float(np.clip((mid_db - floor) / max(self._peak_db - floor, 6.0), 0.0, 1.0))
        nasal = 1.0 / (1.0 + math.exp(-3.0 * (math.log(e_low / e_mid) - math.log(2.5))))
        fric = 1.0 / (1.0 + math.exp(-3.0 * (math.log(e_high / (e_mid + e_low)) - math.log(1.5))))
        f2 = spec[self._f2band]
        centroid = float((f2 * self._f2freqs).sum() / f2.sum())
        tilt = float(np.clip((centroid - 1500.0) / 700.0, -1.0, 1.0))
        voiced = level * (1.0 - fric)
        jaw = MAX_JAW_CM * level**1.3 * (1.0 - nasal) * (1.0 - 0.7 * fric)
        # Labiodental: hiss well below the loudness peak (a sibilant's hiss is nearly as loud as a vowel).
        high_db = 10.0 * math.log10(e_high / FULL_SCALE_SINE_POWER + 1e-12)
        sibilant = float(np.clip((high_db - (self._peak_db - 18.0)) / 8.0, 0.0, 1.0))
        audible = float(np.clip((high_db - floor) / 12.0, 0.0, 1.0))
        fv = fric * (1.0 - sibilant) * audible
        target = np.array(
            [jaw, max(tilt, 0.0) * voiced, max(-tilt, 0.0) * voiced, nasal * level, fv, level], np.float64
        )
        # Fast attack, slower release, per coefficient (one-pole filters at the hop rate).
        rising = target > self._state
        alpha = np.where(rising, 0.6, 0.35)
        self._state += alpha * (target - self._state)
        return self._state.astype(np.float32)

    def _emit(self, available: int, limit: int | None = None) -> list[MotionFrame]:
        frames: list[MotionFrame] = []
        while True:
            k = self._next_frame
            start, end = frame_start_sample(k, self.fps), frame_start_sample(k + 1, self.fps)
            if limit is not None and start >= limit:
                break
            # Hops whose centres fall in the frame's interval shifted into the future.
            h0 = (start + self.shift) // HOP
            h1 = max(h0 + 1, (end + self.shift) // HOP)
            if (h1 - 1) * HOP + HOP // 2 + WIN // 2 > available:
                break
            while self._hop0 + len(self._hops) < h1:
                self._hops.append(self._hop_features((self._hop0 + len(self._hops)) * HOP + HOP // 2))
            jaw, spread, rnd, press, fv, speech = np.mean(
                self._hops[h0 - self._hop0 : h1 - self._hop0], axis=0
            )
            expr = Expression(
                jaw=float(jaw), spread=float(spread), round=float(rnd), press=float(press), fv=float(fv)
            )
            frames.append(MotionFrame(index=k, mesh_offsets=self.rig.offsets(expr), speech=float(speech)))
            self._next_frame += 1
        self._trim()
        return frames

    def _trim(self) -> None:
        """Drop audio no future hop needs (keeps memory flat over hours)."""
        oldest = frame_start_sample(self._next_frame, self.fps) + self.shift - WIN
        drop = oldest - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        first_needed = (frame_start_sample(self._next_frame, self.fps) + self.shift) // HOP
        if first_needed > self._hop0 + len(self._hops):
            first_needed = self._hop0 + len(self._hops)
        if first_needed > self._hop0:
            del self._hops[: first_needed - self._hop0]
            self._hop0 = first_needed
