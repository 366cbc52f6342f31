"""Video files with transparency: the portrait over nothing, for editors and compositing.

Two formats carry an alpha channel (ALPHA_FORMATS, chosen by the file's extension):

    .webm  VP9 with alpha (libvpx-vp9, yuva420p) + Opus 48 kHz   small; browsers, OBS, ffmpeg
    .mov   ProRes 4444 (prores_ks, yuva444p10le) + PCM s16 16 kHz  large, near lossless; editors

Any other extension is refused up front with alpha_format_error's one sentence (H.264 in .mp4 has no alpha).

Both streams are stamped from the same sample clock as mp4_writer.py: video frame k at k/fps (WebM
stores milliseconds, so k/fps rounded to 1 ms), and the audio is exactly the samples given, in order:
the MOV holds them as they are; the WebM resamples them to 48 kHz (Opus's rate) with a flushed resampler,
so it holds exactly 3 samples per sample given, and Opus's priming and last-frame padding are trimmed
by the WebM's CodecDelay and DiscardPadding. A file is written under a temporary name and takes its own
only when finished: whole or absent.

Reading the alpha back (what players and editors do):

    WebM: VP9 keeps alpha as a second VP9 stream in each block's BlockAdditional (the track is marked
        AlphaMode 1). FFmpeg's native `vp9` decoder, PyAV's default for the stream, ignores it and gives
        yuv420p; the `libvpx-vp9` decoder reads it and gives yuva420p. With PyAV, decode the demuxed
        packets with that decoder: `ctx = av.CodecContext.create("libvpx-vp9", "r")`, then
        `ctx.decode(packet)` for each packet of `container.demux(stream)` (alpha_frames below does so).
        ffmpeg on the command line likewise needs `-c:v libvpx-vp9` before `-i`; Chromium-based browsers
        and OBS's media source show the transparency as they are (Safari does not).
    MOV: ProRes 4444's alpha is part of every frame; FFmpeg's `prores` decoder (PyAV's default) gives
        yuva444p12le, so `container.decode(video=0)` is enough. Premiere, Resolve, Final Cut and After
        Effects import it with its alpha.

`frame.to_ndarray(format="rgba")` then gives (S, S, 4) uint8 with the alpha in [..., 3].
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from facecast.frames import AUDIO_RATE_HZ, OutputFrame
from facecast.outputs.base import OutputHost, OutputState
from facecast.outputs.mp4_writer import Mp4Output, written_whole


@dataclass(frozen=True)
class AlphaFormat:
    """A container and the codecs that carry video with an alpha channel in it."""

    container: str  # av.open's format name
    description: str  # what the user is told: "VP9 with alpha"
    video_codec: str
    pix_fmt: str
    video_options: Mapping[str, str]
    audio_codec: str
    audio_rate: int
    audio_bit_rate: int  # 0: the codec's own (PCM)
    audio_frame_samples: int  # samples per encoded audio frame; 0: any
    alpha_decoder: str | None  # the decoder that keeps the alpha; None: the stream's default


ALPHA_FORMATS: dict[str, AlphaFormat] = {
    ".webm": AlphaFormat(
        container="webm",
        description="VP9 with alpha",
        video_codec="libvpx-vp9",
        pix_fmt="yuva420p",  # the "a": libvpx-vp9 encodes the alpha plane as a second stream
        # constant quality (crf with bit_rate 0, PyAV's default). "good" at cpu-used 5 (its fastest) with row
        # threading: ~25-40 ms a 512x512 frame on two cores; "realtime" at cpu-used 8 takes ~10 ms but its
        # files are ~1.7x larger and a little blurrier; cpu-used 1 takes ~80 ms for ~5% smaller files
        video_options={"crf": "30", "deadline": "good", "cpu-used": "5", "row-mt": "1"},
        audio_codec="libopus",
        audio_rate=48000,
        audio_bit_rate=64000,
        audio_frame_samples=960,  # 20 ms
        alpha_decoder="libvpx-vp9",
    ),
    ".mov": AlphaFormat(
        container="mov",
        description="ProRes 4444",
        video_codec="prores_ks",
        pix_fmt="yuva444p10le",
        # vendor apl0: as Apple's own encoder marks its frames, for importers that look
        video_options={"profile": "4444", "vendor": "apl0"},
        audio_codec="pcm_s16le",
        audio_rate=AUDIO_RATE_HZ,  # the samples as given, no resampling
        audio_bit_rate=0,
        audio_frame_samples=0,
        alpha_decoder=None,
    ),
}


def alpha_format_error(path: Path | str) -> str | None:
    """None when `path`'s extension is one of ALPHA_FORMATS, else one sentence saying which are."""
    suffix = Path(path).suffix.lower()
    if suffix in ALPHA_FORMATS:
        return None
    what = f"a {suffix} file" if suffix else "a file without an extension"
    choices = " or ".join(f"{ext} ({fmt.description})" for ext, fmt in ALPHA_FORMATS.items())
    return f"{what} cannot carry transparency: use {choices}"


def alpha_format(path: Path | str) -> AlphaFormat:
    """The format `path`'s extension names; ValueError (alpha_format_error's sentence) when none."""
    error = alpha_format_error(path)
    if error is not None:
        raise ValueError(error)
    return ALPHA_FORMATS[Path(path).suffix.lower()]


class AlphaWriter:
    """The muxer: RGB + alpha video and mono audio into one of ALPHA_FORMATS (`fmt`, whatever `path` is)."""

    def __init__(self, path: Path, *, fps: int, size: int, fmt: AlphaFormat) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.size = size
        self._container = av.open(str(self.path), mode="w", format=fmt.container)
        try:
            # the codecs are named by a variable, so PyAV's stubs can't tell the streams' kinds
            self._video = cast(av.VideoStream, self._container.add_stream(fmt.video_codec, rate=fps))
            self._video.width = size
            self._video.height = size
            self._video.pix_fmt = fmt.pix_fmt
            self._video.options = dict(fmt.video_options)
            self._video_tb = Fraction(1, fps)
            self._audio = cast(
                av.AudioStream, self._container.add_stream(fmt.audio_codec, rate=fmt.audio_rate)
            )
            self._audio.layout = "mono"
            if fmt.audio_bit_rate:
                self._audio.bit_rate = fmt.audio_bit_rate
        except BaseException:
            self._container.close()
            self.path.unlink(missing_ok=True)
            raise
        self._audio_tb = Fraction(1, fmt.audio_rate)
        # 16 kHz float in; the encoder's sample format (and rate: Opus is 48 kHz only) out, flushed at close
        self._resampler = av.AudioResampler(
            format=self._audio.format.name, layout="mono", rate=fmt.audio_rate
        )
        self._fifo = av.AudioFifo()
        self._audio_pts = 0
        self.frames_written = 0

    def write_video(self, index: int, image: np.ndarray, alpha: np.ndarray) -> None:
        """image: (size, size, 3) uint8 RGB, alpha: (size, size) uint8 (255 opaque) for video frame `index`."""
        if image.shape != (self.size, self.size, 3) or alpha.shape != (self.size, self.size):
            raise ValueError(
                f"alpha video frame {index}: image {image.shape} and alpha {alpha.shape}, "
                f"want ({self.size}, {self.size}, 3) and ({self.size}, {self.size})"
            )
        if image.dtype != np.uint8 or alpha.dtype != np.uint8:
            raise ValueError(
                f"alpha video frame {index}: image {image.dtype} and alpha {alpha.dtype}, want uint8"
            )
        rgba = np.concatenate([image, alpha[:, :, None]], axis=2)
        frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
        frame.pts = index
        frame.time_base = self._video_tb
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """samples: float32 mono 16 kHz, contiguous with what was written before."""
        if samples.size == 0:
            return
        pcm = np.clip(samples, -1.0, 1.0).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        self._queue(self._resampler.resample(frame))

    def _queue(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = self._audio_pts
            frame.time_base = self._audio_tb
            self._audio_pts += frame.samples
            self._fifo.write(frame)
        self._drain(self.fmt.audio_frame_samples or self._fifo.samples)

    def _drain(self, samples: int) -> None:
        while samples:
            chunk = self._fifo.read(samples)
            if chunk is None:
                return
            for packet in self._audio.encode(chunk):
                self._container.mux(packet)

    def close(self) -> None:
        self._queue(self._resampler.resample(None))  # the resampler's last samples
        remaining = self._fifo.samples
        if remaining:
            self._drain(remaining)
        for packet in [*self._audio.encode(None), *self._video.encode(None)]:
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> AlphaWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def alpha_file(out: Path, *, fps: int, size: int) -> Iterator[AlphaWriter]:
    """An AlphaWriter on a temporary file that becomes `out` only if the block succeeds: whole or absent.

    The format is `out`'s extension (ValueError for one that cannot carry alpha).
    """
    fmt = alpha_format(out)
    with written_whole(out) as tmp, AlphaWriter(tmp, fps=fps, size=size, fmt=fmt) as writer:
        yield writer


def alpha_frames(path: Path | str) -> Iterator[av.VideoFrame]:
    """The video frames of a file written here, decoded with their alpha (yuva420p for WebM, yuva444p12le
    for MOV): WebM through the libvpx-vp9 decoder, which reads the alpha FFmpeg's own vp9 decoder drops."""
    fmt = ALPHA_FORMATS.get(Path(path).suffix.lower())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if fmt is None or fmt.alpha_decoder is None:
            yield from container.decode(stream)
            return
        decoder = cast(av.VideoCodecContext, av.CodecContext.create(fmt.alpha_decoder, "r"))
        for packet in container.demux(stream):
            # the demuxer's last packet is empty: decode(None) drains the decoder
            yield from decoder.decode(packet if packet.size else None)


class AlphaVideoOutput(Mp4Output):
    """Frames with their alpha matte written to `path` (.webm or .mov) on the calling thread, as Mp4Output
    writes without one: the file starts at the first frame that is not stale; a stale frame shows no video
    and plays silence; video frame k of the file is frame first + k and its audio exactly the samples that
    frame covers. Written under a temporary name: whole or absent.

    Session frames (OutputFrame) carry no alpha matte, so on_frame fails the output: feed it with write().
    """

    kind = "alpha"

    def __init__(self, path: Path) -> None:
        self.format = alpha_format(path)  # ValueError before anything starts
        super().__init__(path)

    def _open(self, path: Path, host: OutputHost) -> AlphaWriter:
        return AlphaWriter(path, fps=host.fps, size=host.size, fmt=self.format)

    def on_frame(self, frame: OutputFrame) -> None:
        if self.state is OutputState.LIVE:
            self.fail("session frames carry no alpha matte: an alpha output is fed with write()")

    def write(  # type: ignore[override]  # the alpha beside the image
        self, index: int, image: np.ndarray, alpha: np.ndarray, audio: np.ndarray, *, stale: bool = False
    ) -> None:
        """Frame `index`: its image (S, S, 3) uint8 RGB, its alpha (S, S) uint8 (255 opaque, 0 clear) and
        the audio it covers (float32 16 kHz)."""
        self._write(index, (image, alpha), audio, stale)
