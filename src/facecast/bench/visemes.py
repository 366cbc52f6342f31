"""`facecast bench visemes VIDEO ALIGNMENT.phone.json [...]`: do lips close on P/B/M and open on vowels?

Loudness alone cannot pass this: M and voiced B are loud, so a mouth that follows the envelope
stays open on them. The score is median opening at bilabial centres / median opening at open-vowel
centres (same opening measure as lipsync); lower is better, about 0.75 for a loudness-driven mouth.

Alignment format (pocketsphinx, as in the LibriVox .phone.json files): {"b","d","p","t","w": words},
each word {"b","d","p","t","w": phones}, each phone {"b": start s, "d": duration s, "t": ARPAbet}.
Times count from the start of the speech: by default the first decoded audio sample's pts (0 in a
render). An MP4 whose audio starts late keeps its AAC priming (up to 1024 samples) before the
speech, so such files may need --speech-start.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})


@dataclass(frozen=True)
class Phone:
    label: str  # ARPAbet without stress digits
    begin_s: float
    duration_s: float

    @property
    def centre_s(self) -> float:
        return self.begin_s + self.duration_s / 2


@dataclass(frozen=True)
class VisemeClip:
    video: str
    alignment: str
    bilabial: np.ndarray  # openings at bilabial centres with a face (nan-free)
    open_vowel: np.ndarray  # openings at open-vowel centres with a face
    face_ratio: float

    @property
    def median_bilabial(self) -> float:
        return float(np.median(self.bilabial)) if self.bilabial.size else float("nan")

    @property
    def median_open(self) -> float:
        return float(np.median(self.open_vowel)) if self.open_vowel.size else float("nan")

    @property
    def ratio(self) -> float:
        return viseme_ratio(self.bilabial, self.open_vowel)


def viseme_ratio(bilabial: np.ndarray, open_vowel: np.ndarray) -> float:
    """median(bilabial) / median(open vowel); nan when either is empty or the vowels show no opening."""
    if not bilabial.size or not open_vowel.size:
        return float("nan")
    vowel = float(np.median(open_vowel))
    return float(np.median(bilabial)) / vowel if vowel > 1e-9 else float("nan")


def load_phones(path: str | Path) -> list[Phone]:
    """Phones of a sentence -> words -> phones alignment JSON (stress digits stripped)."""
    from facecast.bench.mouth_track import MediaInputError

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        phones = [
            Phone(re.sub(r"\d+$", "", str(p["t"]).upper()), float(p["b"]), float(p["d"]))
            for word in doc["w"]
            for p in word.get("w", [])
        ]
    except OSError as exc:
        raise MediaInputError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MediaInputError(
            f"{path} is not a phone alignment (expected words with begin 'b', duration 'd' and phones 'w')"
        ) from exc
    return phones


def measure_clip(video: str | Path, alignment: str | Path, speech_start_s: float | None = None) -> VisemeClip:
    """Openings of one rendered video at the centres of its bilabials and open vowels.

    speech_start_s: container time of the alignment's zero; None = the first audio sample's pts.
    """
    from facecast.bench.mouth_track import MediaInputError, track_mouth
    from facecast.bench.speech_envelope import decode_audio

    phones = load_phones(alignment)
    track = track_mouth(video)
    if speech_start_s is not None:
        offset = speech_start_s
    else:
        try:
            offset = decode_audio(video).start_s
        except MediaInputError:  # a silent render: the speech starts with the video
            offset = float(track.pts_s[0])

    def openings(labels: frozenset[str]) -> np.ndarray:
        centres = np.array([p.centre_s for p in phones if p.label in labels], dtype=np.float64)
        values = track.opening_at(centres + offset)
        return values[np.isfinite(values)]

    return VisemeClip(
        str(video), str(alignment), openings(BILABIALS), openings(OPEN_VOWELS), track.face_ratio
    )


def pooled_ratio(clips: list[VisemeClip]) -> float:
    """Ratio of the medians over all clips' samples together (clips with few bilabials weigh less)."""
    if not clips:
        return float("nan")
    return viseme_ratio(
        np.concatenate([c.bilabial for c in clips]), np.concatenate([c.open_vowel for c in clips])
    )


def _num(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def format_report(clips: list[VisemeClip]) -> str:
    lines = [
        "visemes: median mouth opening (inner lips / eye span) at P B M vs AA AE AH AO AW AY centres",
        f"  {'clip':<40} {'n PBM':>6} {'n open':>6} {'med PBM':>8} {'med open':>8} {'ratio':>6} {'face':>6}",
    ]

    def show(x: float, width: int, digits: int) -> str:
        return f"{x:{width}.{digits}f}" if math.isfinite(x) else f"{'n/a':>{width}}"

    for c in clips:
        lines.append(
            f"  {Path(c.video).name[:40]:<40} {c.bilabial.size:>6d} {c.open_vowel.size:>6d} "
            f"{show(c.median_bilabial, 8, 4)} {show(c.median_open, 8, 4)} {show(c.ratio, 6, 3)} "
            f"{100 * c.face_ratio:>5.1f}%"
        )
    pooled = pooled_ratio(clips)
    lines.append(
        f"pooled ratio {show(pooled, 0, 3).strip()} over {len(clips)} clip(s) (lower = lips close on PBM)"
    )
    payload: dict[str, Any] = {
        "pooled_ratio": _num(pooled),
        "clips": [
            {
                "video": c.video,
                "alignment": c.alignment,
                "n_bilabial": int(c.bilabial.size),
                "n_open": int(c.open_vowel.size),
                "median_bilabial": _num(c.median_bilabial),
                "median_open": _num(c.median_open),
                "ratio": _num(c.ratio),
                "face_ratio": round(c.face_ratio, 4),
            }
            for c in clips
        ],
    }
    lines.append(json.dumps(payload))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from facecast.bench.mouth_track import MediaInputError
    from facecast.cli.errors import CliError

    paths: list[Path] = args.pairs
    if len(paths) % 2:
        raise CliError("give pairs of VIDEO ALIGNMENT.phone.json (an odd number of paths was given)")
    try:
        clips = [
            measure_clip(video, alignment, args.speech_start)
            for video, alignment in zip(paths[::2], paths[1::2], strict=True)
        ]
    except MediaInputError as exc:
        raise CliError(str(exc)) from exc
    print(format_report(clips))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "visemes",
        help="mouth opening at bilabials (P B M) vs open vowels, from a forced phone alignment",
        description="For each VIDEO and its speech's phone alignment, the median inner-lip opening at the "
        "centres of P, B, M against that at AA, AE, AH, AO, AW, AY; the ratio per clip and pooled over all "
        "clips (lower is better). Last line: JSON.",
    )
    parser.add_argument(
        "pairs", nargs="+", type=Path, metavar="VIDEO ALIGNMENT", help="video then its .phone.json, repeated"
    )
    parser.add_argument(
        "--speech-start",
        type=float,
        default=None,
        metavar="SECONDS",
        help="container time where each alignment's zero lies (default: the first audio sample's pts)",
    )
    parser.set_defaults(func=_run)
