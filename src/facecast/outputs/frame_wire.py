"""A session frame as one binary WebSocket message: the frames socket's wire format.

For consumers that take raw frames rather than a WebRTC stream (Pipecat, LiveKit Agents, custom
compositors): each message is frame k's image together with exactly the audio it covers, so a
consumer that keeps them together is in sync by construction, with no jitter buffer in between.

    header  struct "<4sBBHHHIII" (24 bytes, little-endian):
            magic b"FCF1", flags (1: carries speech, 2: an utterance ends in this frame),
            image format (0: rgb24 raw, 1: JPEG), fps, width, height, frame index, generation
            (bumped by each interrupt), audio byte count
    audio   s16le mono 16 kHz, the frame's samples [k*16000/fps, (k+1)*16000/fps)
    image   the rest: width*height*3 bytes of RGB, or a JPEG file

facecast_client.frames reads it (the client package's copy of this contract).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from facecast.frames import OutputFrame

MAGIC = b"FCF1"
HEADER = struct.Struct("<4sBBHHHIII")
FLAG_SPEECH = 1
FLAG_ENDS_UTTERANCE = 2
IMAGE_FORMATS = {"rgb24": 0, "jpeg": 1}


def pack_frame(frame: OutputFrame, image_format: str, jpeg_quality: int = 85) -> bytes:
    """Frame → one message. JPEG encoding takes ~2 ms at 512² (run it off the event loop)."""
    height, width = frame.image.shape[:2]
    if image_format == "jpeg":
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        )
        assert ok, "OpenCV failed to encode a JPEG"
        image = encoded.tobytes()
    else:
        image = np.ascontiguousarray(frame.image).tobytes()
    audio = frame.audio_frame.to_ndarray().astype("<i2", copy=False).tobytes()  # the s16 WebRTC sends
    flags = (FLAG_SPEECH if frame.speech else 0) | (FLAG_ENDS_UTTERANCE if frame.ended else 0)
    header = HEADER.pack(
        MAGIC, flags, IMAGE_FORMATS[image_format], frame.fps, width, height, frame.index,
        frame.generation, len(audio),
    )  # fmt: skip
    return header + audio + image
