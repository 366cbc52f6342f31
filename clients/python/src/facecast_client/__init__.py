"""facecast-client: a typed asyncio client for a facecast server, and avatar integrations for Pipecat
(`facecast_client.pipecat`) and LiveKit Agents (`facecast_client.livekit`). No torch, no model."""

from facecast_client.api import FacecastClient, SessionInfo
from facecast_client.errors import (
    BadRequest,
    Busy,
    Conflict,
    FacecastError,
    NotFound,
    ServerError,
    SessionEnded,
    Unauthorized,
    Unreachable,
)
from facecast_client.frames import Frame
from facecast_client.pcm import PcmConverter, pcm_s16le
from facecast_client.streams import FrameStream, SpeechStream, audio_subprotocols
from facecast_client.viewer import Viewer

__all__ = [
    "BadRequest",
    "Busy",
    "Conflict",
    "FacecastClient",
    "FacecastError",
    "Frame",
    "FrameStream",
    "NotFound",
    "PcmConverter",
    "ServerError",
    "SessionEnded",
    "SessionInfo",
    "SpeechStream",
    "Unauthorized",
    "Unreachable",
    "Viewer",
    "audio_subprotocols",
    "pcm_s16le",
]
