"""A live session's background: a colour or the photo's blurred, behind the moving person; what a live
session cannot show yet (transparency, an image through the API) is refused in one sentence."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from facecast_client import BadRequest, FacecastClient

from facecast.server.runner import RunningServer


async def first_frame(client: FacecastClient, **body: object) -> np.ndarray:
    sid = (await client.create_session(**body))["id"]  # type: ignore[arg-type]
    frames = await client.frames(sid, image="rgb24")
    frame = await asyncio.wait_for(frames.next_frame(), 10)
    await frames.close()
    await client.delete_session(sid)
    return frame.image


async def test_colour_and_blur_replace_the_photos_background(
    server: RunningServer, client: FacecastClient
) -> None:
    kept = await first_frame(client)
    green = await first_frame(client, background="color:#00b140")
    corner = (slice(0, 12), slice(0, 12))
    assert np.abs(green[corner].astype(int) - [0, 177, 64]).max() <= 2  # the colour, behind the head
    middle = (slice(100, 156), slice(100, 156))  # the face is the person: untouched
    assert np.abs(green[middle].astype(int) - kept[middle].astype(int)).mean() < 3
    blurred = await first_frame(client, background="blur")
    assert (
        np.abs(np.diff(blurred[corner].astype(int), axis=1)).mean()
        < np.abs(np.diff(kept[corner].astype(int), axis=1)).mean()
    )  # smoother where the photo's background was


@pytest.mark.parametrize(
    ("spec", "code", "words"),
    [
        ("image:/etc/hostname", "bad_background", "image: takes an id"),
        ("color:#zz", "bad_background", "unknown colour"),
    ],
)
async def test_what_a_live_session_cannot_show_is_refused(
    server: RunningServer, client: FacecastClient, spec: str, code: str, words: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        await client.create_session(background=spec)
    assert refused.value.code == code and words in refused.value.message
    assert (await client.list_sessions()) == []  # nothing half-made
