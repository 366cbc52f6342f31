"""Viewers that count what they receive without decoding it: a bench's own viewers must not take the cores
it measures the server on.

`count_instead_of_decoding()` makes this process's aiortc receivers hand every reassembled frame on as one
placeholder frame instead of decoding it (aiortc has no public switch for this, so its module-level
`get_decoder` is replaced: in bench processes only, never in the product). Frame and packet counts stay
exact; the pictures are not looked at.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np


def count_instead_of_decoding() -> None:
    from aiortc import rtcrtpreceiver

    picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    sound = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    sound.sample_rate = 48000

    class Counted:
        def __init__(self, kind: str) -> None:
            self.frame = picture if kind == "video" else sound

        def decode(self, encoded_frame: Any) -> list[Any]:
            return [self.frame]  # the track stamps nothing from it; the viewer only counts

    rtcrtpreceiver.get_decoder = lambda codec: Counted(codec.mimeType.split("/")[0].lower())  # type: ignore[assignment,return-value]
