"""The typed records of every stage of a session, and the one clock they share.

    AudioBlock ─► engine ─► EngineFrame ─► engine runner ─► OutputFrame ─► every output
    (one frame's    (motion,   (image + the     (av frames, encoded   (WebRTC, recorder,
     audio)          render)    audio it covers)  packets, timings)      files, ...)

One clock: the audio sample index at AUDIO_RATE_HZ; video frame k covers samples
[frame_start_sample(k), frame_start_sample(k + 1)). Interruption is one concept (stream/interruption.py):
every AudioBlock, EngineFrame and OutputFrame carries the generation it was made under.
Shared by every layer, so they live at the package root and depend on numpy and PyAV only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

AUDIO_RATE_HZ = 16000
MESH_VERTICES = 468
VIDEO_CLOCK_HZ = 90000  # RTP video clock; pts of frame k = k * 90000 / fps


def frame_start_sample(k: int, fps: int) -> int:
    """First audio sample (16 kHz) covered by video frame k at `fps` (exact integer arithmetic)."""
    return (k * AUDIO_RATE_HZ) // fps


def s16_frame(samples: np.ndarray, pts: int | None = None) -> av.AudioFrame:
    """float32 mono 16 kHz samples as an s16 av.AudioFrame (clipped to [-1, 1]); pts in 1/16000 if given."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = AUDIO_RATE_HZ
    if pts is not None:
        frame.pts = pts
        frame.time_base = Fraction(1, AUDIO_RATE_HZ)
    return frame


def frame_samples(k: int, fps: int) -> tuple[int, int]:
    """Half-open sample range [start, end) that video frame k covers."""
    return frame_start_sample(k, fps), frame_start_sample(k + 1, fps)


def frames_covering(samples: int, fps: int) -> int:
    """How many video frames it takes to show `samples` of audio (the last one partly covered)."""
    return -(-samples * fps // AUDIO_RATE_HZ)


@dataclass(slots=True)
class AudioBlock:
    """The audio video frame `index` covers: float32 mono 16 kHz, samples frame_samples(index, fps).

    generation: the session's interrupt generation when the block was taken (stream/interruption.py).
    """

    index: int
    samples: np.ndarray
    generation: int = 0


def clip_block(clip: np.ndarray, k: int, fps: int) -> AudioBlock:
    """Frame k's audio of a clip (float32 16 kHz) as an AudioBlock, silence past the clip's end."""
    start, end = frame_samples(k, fps)
    samples = np.zeros(end - start, np.float32)
    part = clip[start:end]
    samples[: part.size] = part
    return AudioBlock(k, samples)


@dataclass(slots=True)
class MotionFrame:
    """Face motion for video frame `index`.

    mesh_offsets: (468, 3) float32, centimetres in MediaPipe's canonical face space, added to the
        avatar's reference metric mesh (same meaning as Audio2Mesh's output).
    pose: (6,) float32 [rx, ry, rz (degrees, euler "xyz"), tx, ty, tz (cm)] relative to the
        reference head pose (AniPortrait's pose format).
    blink: 0 = eyes open, 1 = closed.
    speech: 0..1 speech activity of this frame (0 = silence), used for idle/nod decisions.
    """

    index: int
    mesh_offsets: np.ndarray
    pose: np.ndarray = field(default_factory=lambda: np.zeros(6, np.float32))
    blink: float = 0.0
    speech: float = 0.0


@dataclass(slots=True)
class VideoFrame:
    """A rendered image (H, W, 3) uint8 RGB for video frame `index`, and the motion it was drawn from;
    alpha (H, W) uint8: the person's coverage, when a background other than the photo's own was asked for."""

    index: int
    image: np.ndarray
    motion: MotionFrame | None = None
    alpha: np.ndarray | None = None


@dataclass(slots=True)
class EngineFrame:
    """What an engine hands out (facecast.engine.Engine.pop_frames): frame `index` with the audio it covers.

    image None: the engine was asked not to render this frame (an overloaded live worker), and the previous
    image stands in for it; motion and audio still advance.
    """

    index: int
    image: np.ndarray | None
    audio: AudioBlock
    motion: MotionFrame | None = None
    alpha: np.ndarray | None = None  # as VideoFrame.alpha

    @property
    def generation(self) -> int:
        return self.audio.generation


@dataclass(eq=False)
class OutputFrame:
    """Video frame `index` and the audio it covers as it leaves the session, for every output.

    Made by the engine runner (worker thread); encoded once per codec for all viewers (packets); then
    fanned out on the event loop. `speech` and `generation` decide staleness after an interrupt
    (stream/interruption.py: Interruption.is_stale).
    """

    index: int
    fps: int
    image: np.ndarray  # (S, S, 3) uint8 RGB (straight colour when `alpha` is set)
    audio: np.ndarray  # float32 16 kHz, samples [frame_start_sample(index), frame_start_sample(index + 1))
    generation: int
    speech: bool  # carries utterance audio (not only silence / live input)
    video: av.VideoFrame  # yuv420p, pts in 1/90000; (2S x S, colour | alpha as grey) when `alpha` is set
    audio_frame: av.AudioFrame  # s16 mono 16 kHz, pts = first sample index
    motion: MotionFrame | None = None
    alpha: np.ndarray | None = None  # (S, S) uint8: a transparent session's alpha (packed in `video`)
    due_ns: int = 0
    emitted_ns: int = 0
    render_s: float = 0.0
    encode_s: float = 0.0  # shared video encoding, all codecs (worker thread)
    rendered: bool = True  # False: the worker was late and repeated the previous image (overload)
    utterances: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)  # utterances whose last sample this frame carries
    packets: dict[str, av.Packet | None] = field(default_factory=dict)  # codec -> this frame encoded

    @property
    def video_time_s(self) -> float:
        return (self.index * VIDEO_CLOCK_HZ // self.fps) / VIDEO_CLOCK_HZ

    @property
    def audio_time_s(self) -> float:
        return frame_samples(self.index, self.fps)[0] / AUDIO_RATE_HZ
