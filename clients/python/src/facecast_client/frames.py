"""The frames WebSocket's messages (the server's outputs/frame_wire.py is the other side of this contract):
each message is one video frame's image with exactly the audio it covers, s16 mono 16 kHz."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

MAGIC = b"FCF1"
HEADER = struct.Struct("<4sBBHHHIII")
FLAG_SPEECH = 1
FLAG_ENDS_UTTERANCE = 2
IMAGE_RGB24, IMAGE_JPEG = 0, 1


@dataclass
class Frame:
    index: int  # frame k of the session; k / fps is its time
    fps: int
    generation: int  # bumped by every interrupt
    speech: bool  # carries utterance audio (not idle)
    ends_utterance: bool  # an utterance's last samples are in this frame
    image: np.ndarray  # (H, W, 3) uint8 RGB
    audio: np.ndarray  # int16 mono 16 kHz, 16000 / fps samples

    @property
    def time_s(self) -> float:
        return self.index / self.fps


class FrameReader:
    """Messages → Frames; keeps one JPEG decoder (PyAV's MJPEG: no image library beyond what aiortc brings)."""

    def __init__(self) -> None:
        self._jpeg: Any = None  # av.VideoCodecContext, made at the first JPEG

    def parse(self, message: bytes) -> Frame:
        if len(message) < HEADER.size or message[:4] != MAGIC:
            raise ValueError("not a facecast frame message")
        _, flags, fmt, fps, width, height, index, generation, audio_bytes = HEADER.unpack_from(message)
        audio_end = HEADER.size + audio_bytes
        audio = np.frombuffer(message[HEADER.size : audio_end], dtype="<i2")
        data = message[audio_end:]
        if fmt == IMAGE_RGB24:
            image = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        elif fmt == IMAGE_JPEG:
            image = self._decode_jpeg(data)
        else:
            raise ValueError(f"unknown image format {fmt}")
        speech, ends = bool(flags & FLAG_SPEECH), bool(flags & FLAG_ENDS_UTTERANCE)
        return Frame(index, fps, generation, speech, ends, image, audio)

    def _decode_jpeg(self, data: bytes) -> np.ndarray:
        if self._jpeg is None:
            self._jpeg = av.CodecContext.create("mjpeg", "r")
        frames = self._jpeg.decode(av.Packet(data))
        if not frames:
            raise ValueError("a JPEG image that does not decode")
        image: np.ndarray = frames[0].to_ndarray(format="rgb24")
        return image
